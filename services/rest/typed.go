package rest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	"github.com/kubecord/kubecord/internal/discordjson"
)

// toDiscord renders a contract message as Discord JSON: the contract's
// field names are Discord's keys and protojson writes 64-bit ids as
// strings, as Discord wants them; unset fields are left out.
var toDiscord = protojson.MarshalOptions{UseProtoNames: true}

func protoJSON[T proto.Message](ms []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		b, err := toDiscord.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encoding %T: %w", m, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func ids(v []uint64) []string {
	out := make([]string, len(v))
	for i, id := range v {
		out[i] = strconv.FormatUint(id, 10)
	}
	return out
}

type allowedMentionsJSON struct {
	Parse       []string `json:"parse"`
	Roles       []string `json:"roles,omitempty"`
	Users       []string `json:"users,omitempty"`
	RepliedUser bool     `json:"replied_user,omitempty"`
}

func allowedMentions(a *restv1.AllowedMentions) *allowedMentionsJSON {
	if a == nil {
		return nil
	}
	return &allowedMentionsJSON{Parse: append([]string{}, a.GetParse()...), Roles: ids(a.GetRoles()), Users: ids(a.GetUsers()), RepliedUser: a.GetRepliedUser()}
}

type attachmentJSON struct {
	ID       int    `json:"id"`
	Filename string `json:"filename"`
}

func attachments(files []*restv1.File) []attachmentJSON {
	var out []attachmentJSON
	for i, f := range files {
		out = append(out, attachmentJSON{ID: i, Filename: f.GetName()})
	}
	return out
}

// messageJSON is the body of a message create or an interaction message.
type messageJSON struct {
	Content          string               `json:"content,omitempty"`
	TTS              bool                 `json:"tts,omitempty"`
	Embeds           []json.RawMessage    `json:"embeds,omitempty"`
	Components       []json.RawMessage    `json:"components,omitempty"`
	AllowedMentions  *allowedMentionsJSON `json:"allowed_mentions,omitempty"`
	MessageReference json.RawMessage      `json:"message_reference,omitempty"`
	StickerIDs       []string             `json:"sticker_ids,omitempty"`
	Flags            int64                `json:"flags,omitempty"`
	Nonce            string               `json:"nonce,omitempty"`
	EnforceNonce     bool                 `json:"enforce_nonce,omitempty"`
	Attachments      []attachmentJSON     `json:"attachments,omitempty"`
	// Interaction-only fields.
	Choices  []json.RawMessage `json:"choices,omitempty"`
	CustomID string            `json:"custom_id,omitempty"`
	Title    string            `json:"title,omitempty"`
}

// CreateMessage implements RestServiceServer.
func (s *Service) CreateMessage(ctx context.Context, req *restv1.CreateMessageRequest) (*restv1.CreateMessageResponse, error) {
	if req.GetChannelId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "channel_id is required")
	}
	m := messageJSON{Content: req.GetContent(), TTS: req.GetTts(), AllowedMentions: allowedMentions(req.GetAllowedMentions()),
		StickerIDs: ids(req.GetStickerIds()), Flags: req.GetFlags(), Nonce: req.GetNonce(), EnforceNonce: req.GetEnforceNonce(),
		Attachments: attachments(req.GetFiles())}
	var err error
	if m.Embeds, err = protoJSON(req.GetEmbeds()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if m.Components, err = protoJSON(req.GetComponents()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if r := req.GetMessageReference(); r != nil {
		if m.MessageReference, err = toDiscord.Marshal(r); err != nil {
			return nil, status.Error(codes.InvalidArgument, "encoding message_reference: "+err.Error())
		}
	}
	res, err := s.typedCall(ctx, &restv1.DoRequest{Bot: req.GetBot(), Method: http.MethodPost,
		Path: "/channels/" + strconv.FormatUint(req.GetChannelId(), 10) + "/messages", Files: req.GetFiles(), Timeout: req.GetTimeout()}, m)
	if err != nil {
		return nil, err
	}
	msg := &discordv1.Message{}
	if err := discordjson.DecodeInto(msg, res.GetBody()); err != nil {
		return nil, status.Errorf(codes.Internal, "Discord created the message but its JSON did not decode: %v", err)
	}
	return &restv1.CreateMessageResponse{Message: msg, RateLimit: res.GetRateLimit()}, nil
}

// CreateInteractionResponse implements RestServiceServer.
func (s *Service) CreateInteractionResponse(ctx context.Context, req *restv1.CreateInteractionResponseRequest) (*restv1.CreateInteractionResponseResponse, error) {
	if req.GetInteractionId() == 0 || req.GetInteractionToken() == "" || req.GetType() == 0 {
		return nil, status.Error(codes.InvalidArgument, "interaction_id, interaction_token and type are required")
	}
	body := struct {
		Type int32        `json:"type"`
		Data *messageJSON `json:"data,omitempty"`
	}{Type: req.GetType()}
	if d := req.GetData(); d != nil || len(req.GetFiles()) > 0 {
		m := &messageJSON{Content: d.GetContent(), TTS: d.GetTts(), AllowedMentions: allowedMentions(d.GetAllowedMentions()),
			Flags: d.GetFlags(), CustomID: d.GetCustomId(), Title: d.GetTitle(), Attachments: attachments(req.GetFiles())}
		var err error
		if m.Embeds, err = protoJSON(d.GetEmbeds()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if m.Components, err = protoJSON(d.GetComponents()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		for _, c := range d.GetChoices() {
			ch := map[string]any{"name": c.GetName()}
			if len(c.GetNameLocalizations()) > 0 {
				ch["name_localizations"] = c.GetNameLocalizations()
			}
			switch v := c.GetValue().(type) {
			case *restv1.CommandOptionChoice_StringValue:
				ch["value"] = v.StringValue
			case *restv1.CommandOptionChoice_IntValue:
				ch["value"] = v.IntValue
			case *restv1.CommandOptionChoice_DoubleValue:
				ch["value"] = v.DoubleValue
			default:
				return nil, status.Errorf(codes.InvalidArgument, "choice %q has no value", c.GetName())
			}
			b, err := json.Marshal(ch)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "choice %q: %v", c.GetName(), err)
			}
			m.Choices = append(m.Choices, b)
		}
		body.Data = m
	}
	path := "/interactions/" + strconv.FormatUint(req.GetInteractionId(), 10) + "/" + req.GetInteractionToken() + "/callback"
	if req.GetWithResponse() {
		path += "?with_response=true"
	}
	res, err := s.typedCall(ctx, &restv1.DoRequest{Bot: req.GetBot(), Method: http.MethodPost, Path: path, Files: req.GetFiles(), Timeout: req.GetTimeout()}, body)
	if err != nil {
		return nil, err
	}
	out := &restv1.CreateInteractionResponseResponse{RateLimit: res.GetRateLimit()}
	if len(res.GetBody()) > 0 {
		var cb struct {
			Resource struct {
				Message json.RawMessage `json:"message"`
			} `json:"resource"`
		}
		if json.Unmarshal(res.GetBody(), &cb) == nil && len(cb.Resource.Message) > 0 && string(cb.Resource.Message) != "null" {
			msg := &discordv1.Message{}
			if err := discordjson.DecodeInto(msg, cb.Resource.Message); err != nil {
				return nil, status.Errorf(codes.Internal, "Discord answered the interaction but its message did not decode: %v", err)
			}
			out.Message = msg
		}
	}
	return out, nil
}

// typedCall sends a typed helper's request through Do and turns Discord's
// error answers into gRPC errors carrying Discord's code and message.
func (s *Service) typedCall(ctx context.Context, req *restv1.DoRequest, body any) (*restv1.DoResponse, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "encoding the request: %v", err)
	}
	req.Body = b
	if req.Timeout == nil {
		if _, ok := ctx.Deadline(); !ok {
			req.Timeout = durationpb.New(s.cfg.RequestTimeout)
		}
	}
	res, err := s.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.GetStatus()/100 == 2 {
		return res, nil
	}
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(res.GetBody(), &e) // non-JSON errors keep code 0 and the status
	msg := fmt.Sprintf("Discord answered %d (code %d): %s", res.GetStatus(), e.Code, truncate(e.Message, 300))
	code := codes.Unknown
	switch {
	case e.Code == 40060:
		code = codes.FailedPrecondition
	case res.GetStatus() == http.StatusBadRequest:
		code = codes.InvalidArgument
	case res.GetStatus() == http.StatusUnauthorized:
		code = codes.Unauthenticated
	case res.GetStatus() == http.StatusForbidden:
		code = codes.PermissionDenied
	case res.GetStatus() == http.StatusNotFound:
		code = codes.NotFound
	case res.GetStatus() == http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case res.GetStatus() >= 500:
		code = codes.Unavailable
	}
	return nil, status.Error(code, msg)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
