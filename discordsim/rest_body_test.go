package discordsim

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseMessageRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		ct     string
		body   string
		limit  int64
		status int // 0: accepted
		code   int
	}{
		{"json", "application/json", `{"content":"hi","tts":true,"nonce":123}`, 1 << 20, 0, 0},
		{"json charset", "application/json; charset=utf-8", `{"content":"hi"}`, 1 << 20, 0, 0},
		{"json null content with embed", "application/json", `{"content":null,"embeds":[{"title":"t"}]}`, 1 << 20, 0, 0},
		{"empty object", "application/json", `{}`, 1 << 20, 400, 50006},
		{"array body", "application/json", `[]`, 1 << 20, 400, 50035},
		{"garbage", "application/json", `{{`, 1 << 20, 400, 50109},
		{"url-encoded", "application/x-www-form-urlencoded", `content=hello+there&nonce=abc&tts=true`, 1 << 20, 0, 0},
		{"url-encoded empty", "application/x-www-form-urlencoded", `tts=true`, 1 << 20, 400, 50006},
		{"url-encoded bad", "application/x-www-form-urlencoded", `content=%zz`, 1 << 20, 400, 50035},
		{"no content type", "", `{"content":"x"}`, 1 << 20, 400, 50035},
		{"form without boundary", "multipart/form-data", `x`, 1 << 20, 400, 50035},
		{"limit", "application/json", `{"content":"` + strings.Repeat("a", 100) + `"}`, 50, 413, 40005},
		{"integer nonce too big", "application/json", `{"content":"x","nonce":1e30}`, 1 << 20, 400, 50035},
		{"object nonce", "application/json", `{"content":"x","nonce":{}}`, 1 << 20, 400, 50035},
		{"bad sticker id", "application/json", `{"sticker_ids":["abc"]}`, 1 << 20, 400, 50035},
	} {
		req, rerr := parseMessageRequest(tc.ct, strings.NewReader(tc.body), tc.limit)
		if rerr == nil {
			rerr = req.validate(true)
		}
		switch {
		case tc.status == 0 && rerr != nil:
			t.Errorf("%s: rejected with %d %+v", tc.name, rerr.status, rerr.body)
		case tc.status != 0 && rerr == nil:
			t.Errorf("%s: accepted, want %d", tc.name, tc.status)
		case tc.status != 0 && (rerr.status != tc.status || rerr.body.Code != tc.code):
			t.Errorf("%s: %d %+v, want %d code %d", tc.name, rerr.status, rerr.body, tc.status, tc.code)
		}
	}
}

func TestParseMultipartFields(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("content", "plain field")
	fw, _ := mw.CreateFormFile("files[3]", "a.txt")
	_, _ = fw.Write([]byte("abc"))
	fw, _ = mw.CreateFormFile("file", "legacy.txt")
	_, _ = fw.Write([]byte("abcdef"))
	_ = mw.Close()
	req, rerr := parseMessageRequest(mw.FormDataContentType(), &buf, 1<<20)
	if rerr != nil {
		t.Fatalf("rejected: %+v", rerr.body)
	}
	if req.Content == nil || *req.Content != "plain field" || len(req.files) != 2 || req.files[0].index != 3 ||
		req.files[0].size != 3 || req.files[1].filename != "legacy.txt" || req.files[1].size != 6 {
		t.Fatalf("parsed %+v files %+v", req, req.files)
	}

	buf.Reset()
	mw = multipart.NewWriter(&buf)
	fw, _ = mw.CreateFormFile("files[x]", "a.txt")
	_, _ = fw.Write([]byte("abc"))
	_ = mw.Close()
	if _, rerr := parseMessageRequest(mw.FormDataContentType(), &buf, 1<<20); rerr == nil || rerr.body.Code != 50035 {
		t.Fatalf("bad file index accepted: %+v", rerr)
	}
}

func TestFormErrorsShape(t *testing.T) {
	t.Parallel()
	errs := formErrors{}
	errs.add("A", "first", "embeds", "0", "title")
	errs.add("B", "second", "embeds", "0", "title")
	errs.add("C", "third", "content")
	b, err := json.Marshal(apiError{Code: 50035, Message: "Invalid Form Body", Errors: errs})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"code":50035,"message":"Invalid Form Body","errors":{"content":{"_errors":[{"code":"C","message":"third"}]},` +
		`"embeds":{"0":{"title":{"_errors":[{"code":"A","message":"first"},{"code":"B","message":"second"}]}}}}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

// FuzzParseMessageRequest feeds arbitrary bodies to the message body decoder
// (JSON and multipart with payload_json): it must answer, never panic, and
// any error must be a 4xx with a Discord code.
func FuzzParseMessageRequest(f *testing.F) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("payload_json", `{"content":"x","attachments":[{"id":0}]}`)
	fw, _ := mw.CreateFormFile("files[0]", "a.png")
	_, _ = fw.Write([]byte{1, 2, 3})
	_ = mw.Close()
	f.Add(mw.FormDataContentType(), buf.Bytes())
	f.Add("application/json", []byte(`{"content":"hello","embeds":[{"title":"t","fields":[{"name":"n","value":"v"}]}],"nonce":"abc"}`))
	f.Add("application/json", []byte(`{"content":null,"nonce":12345678901234567890}`))
	f.Add("application/json", []byte(`{"embeds":[1,"x",null]}`))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n\r\n{\"content\":1}\r\n--x--\r\n"))
	f.Add("text/plain", []byte("hi"))
	f.Add("application/x-www-form-urlencoded", []byte("content=a%20b&nonce=1&tts=1"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req, rerr := parseMessageRequest(ct, bytes.NewReader(body), 1<<16)
		if rerr == nil {
			rerr = req.validate(true)
		}
		if rerr == nil {
			return
		}
		if rerr.status < 400 || rerr.status >= 500 || rerr.body.Code == 0 || rerr.body.Message == "" {
			t.Fatalf("error %d %+v is not a Discord 4xx error", rerr.status, rerr.body)
		}
		if _, err := json.Marshal(rerr.body); err != nil {
			t.Fatalf("error body does not encode: %v", err)
		}
		_ = http.StatusText(rerr.status)
	})
}

func TestMessageStoreBound(t *testing.T) {
	t.Parallel()
	ms := newMessageStore(100)
	for i := 1; i <= 1000; i++ {
		ms.add(Message{ID: Snowflake(i), ChannelID: 7, Pinned: i == 950}, 1)
		if i == 950 {
			ms.update(7, 950, 0, func(*storedMessage) bool { return true })
		}
	}
	got := ms.list(7, 0, historyQuery{limit: 100, after: 0})
	sh := ms.shard(7)
	sh.mu.RLock()
	n, stored := len(sh.chans[7].ids), len(sh.chans[7].byID)
	sh.mu.RUnlock()
	if n > 125 || n < 100 || stored != n {
		t.Fatalf("kept %d ids / %d messages, want between 100 and 125 and equal", n, stored)
	}
	if got[0].ID != 1000 {
		t.Fatalf("newest = %v, want 1000", got[0].ID)
	}
	if pins := ms.pinned(7, 0); len(pins) != 1 || pins[0].ID != 950 {
		t.Fatalf("pins = %+v", pins)
	}
	if _, ok := ms.get(7, 1, 0); ok {
		t.Fatal("the oldest message was kept")
	}
}

// FuzzRESTPath feeds arbitrary request paths through version stripping, the
// router and the emoji parser: any path must get an answer, never a panic.
func FuzzRESTPath(f *testing.F) {
	for _, p := range []string{
		"/api/v10/channels/1/messages", "/api/v9/channels/1/messages/2/reactions/%F0%9F%91%8D/@me",
		"/api/channels/1/messages/2/reactions/name:123/@me", "/api/v4/users/@me", "/api/v10/webhooks/1/tok/messages/@original",
		"/api/v10//", "/api/vx/", "/api/v10/channels/%zz/messages", "/apix",
	} {
		f.Add(p)
	}
	lim := newLimiter(func() time.Time { return time.Unix(0, 0) }, bucketTable, nil)
	rt := newRouter(lim, restRoutes())
	rs := &restState{routes: rt, lim: lim}
	f.Fuzz(func(t *testing.T, path string) {
		u := &url.URL{Path: path}
		r := &http.Request{Method: "GET", URL: u}
		w := &discardWriter{h: http.Header{}}
		c := &reqCtx{rs: rs, w: w, r: r}
		p, ok := rs.stripVersion(c)
		if !ok {
			if w.status < 400 {
				t.Fatalf("rejected %q with status %d", path, w.status)
			}
			return
		}
		if route, _ := rt.match("GET", p, c); route != nil {
			c.route = route
			_ = rs.parseIDs(c)
			if v := c.str("emoji.id"); v != "" {
				_, _ = parseEmoji(v)
			}
		}
	})
}
