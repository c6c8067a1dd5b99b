package discordsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Discord's documented size limits for messages.
const (
	maxContentRunes   = 2000
	maxEmbeds         = 10
	maxFiles          = 10
	maxEmbedTotal     = 6000
	maxNonceLen       = 25
	maxEmbedTitle     = 256
	maxEmbedDesc      = 4096
	maxEmbedFields    = 25
	maxEmbedFieldName = 256
	maxEmbedFieldVal  = 1024
	maxEmbedFooter    = 2048
	maxEmbedAuthor    = 256
	maxComponentRows  = 40
	maxStickers       = 3
)

// requestError is a 4xx answer decided while reading a request body.
type requestError struct {
	status int
	body   apiError
}

func (e *requestError) Error() string { return e.body.Message }

func badJSON() *requestError {
	return &requestError{status: http.StatusBadRequest, body: apiError{Code: 50109, Message: "The request body contains invalid JSON."}}
}

func tooLarge() *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge, body: apiError{Code: 40005, Message: "Request entity too large"}}
}

func formError(errs formErrors) *requestError {
	return &requestError{status: http.StatusBadRequest, body: apiError{Code: 50035, Message: "Invalid Form Body", Errors: errs}}
}

// messageRequest is the body of message create/edit and webhook execute.
type messageRequest struct {
	Content          *string           `json:"content"`
	Nonce            json.RawMessage   `json:"nonce"`
	TTS              bool              `json:"tts"`
	Embeds           []json.RawMessage `json:"embeds"`
	Components       []json.RawMessage `json:"components"`
	StickerIDs       []Snowflake       `json:"sticker_ids"`
	Attachments      []attachmentRef   `json:"attachments"`
	MessageReference json.RawMessage   `json:"message_reference"`
	Flags            *int              `json:"flags"`
	Poll             json.RawMessage   `json:"poll"`
	AllowedMentions  json.RawMessage   `json:"allowed_mentions"`
	// Webhook execution only.
	Username  *string `json:"username"`
	AvatarURL *string `json:"avatar_url"`

	// files are the uploaded files of a multipart request, by index n of
	// their files[n] field.
	files []uploadedFile
	// has records which top-level keys were present, so an edit can tell
	// "absent" from "null".
	has map[string]bool
}

// attachmentRef is an entry of "attachments" in a message body.
type attachmentRef struct {
	ID          json.RawMessage `json:"id"`
	Filename    string          `json:"filename"`
	Description string          `json:"description"`
}

// uploadedFile is one files[n] part.
type uploadedFile struct {
	index       int
	filename    string
	contentType string
	size        int
}

// embedLimits is the part of an embed whose lengths Discord limits.
type embedLimits struct {
	Title       *string `json:"title"`
	Description *string `json:"description"`
	Fields      []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"fields"`
	Footer *struct {
		Text string `json:"text"`
	} `json:"footer"`
	Author *struct {
		Name string `json:"name"`
	} `json:"author"`
}

// parseMessageRequest reads a message body of the given Content-Type from r,
// reading at most limit bytes. It accepts application/json and
// multipart/form-data (payload_json plus files[n], or content as a field).
func parseMessageRequest(contentType string, r io.Reader, limit int64) (*messageRequest, *requestError) {
	return parseMessageBody(contentType, r, limit, true)
}

// parseMessageBody is parseMessageRequest; keys says whether to record which
// top-level keys were present (edits need it, creates do not).
func parseMessageBody(contentType string, r io.Reader, limit int64, keys bool) (*messageRequest, *requestError) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = ""
	}
	lr := &io.LimitedReader{R: r, N: limit + 1}
	switch mt {
	case "application/json":
		b, err := io.ReadAll(lr)
		if err != nil {
			return nil, badJSON()
		}
		if int64(len(b)) > limit {
			return nil, tooLarge()
		}
		return decodeMessageJSON(b, keys)
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(lr)
		if err != nil {
			return nil, badMultipart()
		}
		if int64(len(b)) > limit {
			return nil, tooLarge()
		}
		return parseFormMessage(string(b))
	case "multipart/form-data":
		boundary := params["boundary"]
		if boundary == "" {
			return nil, contentTypeError()
		}
		req, rerr := parseMultipart(multipart.NewReader(lr, boundary))
		if lr.N <= 0 {
			return nil, tooLarge()
		}
		return req, rerr
	}
	return nil, contentTypeError()
}

// contentTypeError is Discord's answer to a body of an unsupported type.
func contentTypeError() *requestError {
	errs := formErrors{}
	errs.add("CONTENT_TYPE_INVALID", "Expected \"Content-Type\" header to be one of {'application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'}.")
	return formError(errs)
}

// decodeMessageJSON decodes a JSON message body.
func decodeMessageJSON(b []byte, keys bool) (*messageRequest, *requestError) {
	var req messageRequest
	if err := json.Unmarshal(b, &req); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			errs := formErrors{}
			field := ute.Field
			if field == "" {
				field = "_root"
			}
			errs.add("MODEL_TYPE_CONVERT", "Could not interpret the value as "+ute.Type.String()+".", strings.Split(field, ".")...)
			return nil, formError(errs)
		}
		var se *snowflakeError
		if errors.As(err, &se) {
			errs := formErrors{}
			errs.add("NUMBER_TYPE_COERCE", "Value "+truncate(se.raw, 64)+" is not snowflake.")
			return nil, formError(errs)
		}
		return nil, badJSON()
	}
	if !keys {
		return &req, nil
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(b, &present); err == nil {
		req.has = make(map[string]bool, len(present))
		for k := range present {
			req.has[k] = true
		}
	}
	return &req, nil
}

// parseMultipart reads a multipart message body.
func parseMultipart(mr *multipart.Reader) (*messageRequest, *requestError) {
	req := &messageRequest{}
	var content *string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, badMultipart()
		}
		name := p.FormName()
		switch {
		case name == "payload_json":
			b, err := io.ReadAll(p)
			if err != nil {
				return nil, badMultipart()
			}
			files := req.files
			decoded, rerr := decodeMessageJSON(b, true)
			if rerr != nil {
				return nil, rerr
			}
			req = decoded
			req.files = files
		case name == "content":
			b, err := io.ReadAll(p)
			if err != nil {
				return nil, badMultipart()
			}
			s := string(b)
			content = &s
		case strings.HasPrefix(name, "files[") && strings.HasSuffix(name, "]"), name == "file":
			idx := 0
			if name != "file" {
				n, err := strconv.Atoi(name[len("files[") : len(name)-1])
				if err != nil || n < 0 || n > 9 {
					errs := formErrors{}
					errs.add("BASE_TYPE_BAD_INDEX", "Invalid file index "+strconv.Quote(truncate(name, 32))+".", "files")
					return nil, formError(errs)
				}
				idx = n
			}
			size, err := io.Copy(io.Discard, p)
			if err != nil {
				return nil, badMultipart()
			}
			ct := p.Header.Get("Content-Type")
			if ct == "" {
				ct = "application/octet-stream"
			}
			req.files = append(req.files, uploadedFile{index: idx, filename: p.FileName(), contentType: ct, size: int(size)})
		default:
			// Unknown fields are ignored, as Discord does.
			if _, err := io.Copy(io.Discard, p); err != nil {
				return nil, badMultipart()
			}
		}
	}
	if content != nil && req.Content == nil {
		req.Content = content
	}
	return req, nil
}

// parseFormMessage reads the simple fields of a URL-encoded message body
// (content, nonce, tts), which Discord accepts as well.
func parseFormMessage(body string) (*messageRequest, *requestError) {
	vals, err := url.ParseQuery(body)
	if err != nil {
		errs := formErrors{}
		errs.add("FORM_INVALID", "The form body could not be parsed.")
		return nil, formError(errs)
	}
	req := &messageRequest{has: map[string]bool{}}
	if _, ok := vals["content"]; ok {
		c := vals.Get("content")
		req.Content = &c
		req.has["content"] = true
	}
	if n := vals.Get("nonce"); n != "" {
		enc, err := json.Marshal(n)
		if err != nil {
			return nil, badJSON()
		}
		req.Nonce = enc
	}
	req.TTS = parseBool(vals.Get("tts"))
	return req, nil
}

func badMultipart() *requestError {
	errs := formErrors{}
	errs.add("MULTIPART_INVALID", "The multipart body could not be parsed.")
	return formError(errs)
}

// validate checks the limits Discord enforces on a message body. create is
// false for edits, where an all-empty body is allowed.
func (req *messageRequest) validate(create bool) *requestError {
	var errs formErrors
	if req.Content != nil && utf8.RuneCountInString(*req.Content) > maxContentRunes {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(maxContentRunes)+" or fewer in length.", "content")
	}
	if len(req.Embeds) > maxEmbeds {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(maxEmbeds)+" or fewer in length.", "embeds")
	}
	total := 0
	for i, raw := range req.Embeds {
		var e embedLimits
		if err := json.Unmarshal(raw, &e); err != nil {
			errs.add("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType.", "embeds", strconv.Itoa(i))
			continue
		}
		total += checkLen(&errs, e.Title, maxEmbedTitle, "embeds", strconv.Itoa(i), "title")
		total += checkLen(&errs, e.Description, maxEmbedDesc, "embeds", strconv.Itoa(i), "description")
		if len(e.Fields) > maxEmbedFields {
			errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(maxEmbedFields)+" or fewer in length.", "embeds", strconv.Itoa(i), "fields")
		}
		for j, f := range e.Fields {
			total += checkLen(&errs, &f.Name, maxEmbedFieldName, "embeds", strconv.Itoa(i), "fields", strconv.Itoa(j), "name")
			total += checkLen(&errs, &f.Value, maxEmbedFieldVal, "embeds", strconv.Itoa(i), "fields", strconv.Itoa(j), "value")
		}
		if e.Footer != nil {
			total += checkLen(&errs, &e.Footer.Text, maxEmbedFooter, "embeds", strconv.Itoa(i), "footer", "text")
		}
		if e.Author != nil {
			total += checkLen(&errs, &e.Author.Name, maxEmbedAuthor, "embeds", strconv.Itoa(i), "author", "name")
		}
	}
	if total > maxEmbedTotal {
		errs.add("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of "+strconv.Itoa(maxEmbedTotal), "embeds")
	}
	if len(req.Components) > maxComponentRows {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(maxComponentRows)+" or fewer in length.", "components")
	}
	if len(req.StickerIDs) > maxStickers {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(maxStickers)+" or fewer in length.", "sticker_ids")
	}
	if len(req.files) > maxFiles {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(maxFiles)+" or fewer in length.", "files")
	}
	if len(req.Nonce) > 0 && !bytes.Equal(req.Nonce, []byte("null")) {
		var s string
		var n json.Number
		switch {
		case json.Unmarshal(req.Nonce, &s) == nil:
			if len(s) > maxNonceLen {
				errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(maxNonceLen)+" or fewer in length.", "nonce")
			}
		case json.Unmarshal(req.Nonce, &n) == nil:
			if _, err := n.Int64(); err != nil {
				errs.add("NUMBER_TYPE_COERCE", "Value is not a valid integer nonce.", "nonce")
			}
		default:
			errs.add("NONCE_TYPE_INVALID", "Nonce must be a string or an integer.", "nonce")
		}
	}
	if len(errs) > 0 {
		return formError(errs)
	}
	if create && req.empty() {
		return &requestError{status: http.StatusBadRequest, body: apiError{Code: 50006, Message: "Cannot send an empty message"}}
	}
	return nil
}

// checkLen records a max-length error and returns the counted length.
func checkLen(errs *formErrors, s *string, limit int, path ...string) int {
	if s == nil {
		return 0
	}
	n := utf8.RuneCountInString(*s)
	if n > limit {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be "+strconv.Itoa(limit)+" or fewer in length.", path...)
	}
	return n
}

// empty reports whether the body would make a message with nothing in it.
func (req *messageRequest) empty() bool {
	return (req.Content == nil || *req.Content == "") && len(req.Embeds) == 0 && len(req.files) == 0 &&
		len(req.StickerIDs) == 0 && len(req.Components) == 0 && (len(req.Poll) == 0 || bytes.Equal(req.Poll, []byte("null")))
}

// decodeJSONBody reads a small JSON body into v, answering the request with
// Discord's error when it cannot. It returns false after answering.
func (c *reqCtx) decodeJSONBody(v any) bool {
	ct := c.r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if mt != "application/json" {
		if c.r.ContentLength == 0 && ct == "" {
			// An empty body without a type is an empty object.
			return true
		}
		e := contentTypeError()
		c.json(e.status, e.body)
		return false
	}
	b, err := io.ReadAll(io.LimitReader(c.r.Body, c.rs.cfg.MaxBodyBytes+1))
	if err != nil {
		c.fail(http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return false
	}
	if int64(len(b)) > c.rs.cfg.MaxBodyBytes {
		c.fail(http.StatusRequestEntityTooLarge, 40005, "Request entity too large")
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			errs := formErrors{}
			errs.add("MODEL_TYPE_CONVERT", "Could not interpret the value as "+ute.Type.String()+".", strings.Split(ute.Field, ".")...)
			c.invalidForm(errs)
			return false
		}
		c.fail(http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return false
	}
	return true
}

// readMessageRequest reads and validates a message body, answering the
// request on error.
func (c *reqCtx) readMessageRequest(create bool) (*messageRequest, bool) {
	req, rerr := parseMessageBody(c.r.Header.Get("Content-Type"), c.r.Body, c.rs.cfg.MaxBodyBytes, !create)
	if rerr == nil {
		rerr = req.validate(create)
	}
	if rerr != nil {
		c.json(rerr.status, rerr.body)
		return nil, false
	}
	return req, true
}
