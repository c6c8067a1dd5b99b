package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// Gateway opcodes the service sends.
const (
	opPresenceUpdate    = 3
	opVoiceStateUpdate  = 4
	opRequestMembers    = 8
	maxGatewayPayload   = 4096
	maxNonceBytes       = 32
	maxRequestedUserIDs = 100
	// chunkBuffer bounds the chunks queued for one caller; a caller that falls this far
	// behind fails instead of stalling the shard's read loop.
	chunkBuffer = 256
)

// chunkWaiter receives the replies to one Request Guild Members, matched by nonce.
type chunkWaiter struct {
	chunks  chan *discordv1.GuildMembersChunk
	limited chan *discordv1.RateLimited
	// overflow is closed when the dispatch path had to drop a chunk for this caller.
	overflow     chan struct{}
	overflowOnce sync.Once
}

type chunkWaiters struct {
	mu sync.Mutex
	m  map[string]*chunkWaiter
}

func (c *chunkWaiters) add(nonce string) (*chunkWaiter, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.m[nonce]; dup {
		return nil, false
	}
	w := &chunkWaiter{
		chunks:   make(chan *discordv1.GuildMembersChunk, chunkBuffer),
		limited:  make(chan *discordv1.RateLimited, 1),
		overflow: make(chan struct{}),
	}
	c.m[nonce] = w
	return w, true
}

func (c *chunkWaiters) remove(nonce string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, nonce)
}

func (c *chunkWaiters) get(nonce string) *chunkWaiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[nonce]
}

func (c *chunkWaiters) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.m {
		w.overflowOnce.Do(func() { close(w.overflow) })
	}
}

// routeCommandReply hands GUILD_MEMBERS_CHUNK and RATE_LIMITED replies to the caller waiting
// for their nonce. It never blocks: a caller too slow to drain its queue is failed.
func (s *Server) routeCommandReply(ev *discordv1.Event) {
	switch p := ev.GetPayload().(type) {
	case *discordv1.Event_GuildMembersChunk:
		if p.GuildMembersChunk.Nonce == nil {
			return
		}
		w := s.chunks.get(p.GuildMembersChunk.GetNonce())
		if w == nil {
			return
		}
		select {
		case w.chunks <- p.GuildMembersChunk:
		default:
			w.overflowOnce.Do(func() { close(w.overflow) })
		}
	case *discordv1.Event_RateLimited:
		meta := p.RateLimited.GetMeta()
		if p.RateLimited.GetOpcode() != opRequestMembers || meta == nil || meta.Nonce == nil {
			return
		}
		if w := s.chunks.get(meta.GetNonce()); w != nil {
			select {
			case w.limited <- p.RateLimited:
			default:
			}
		}
	}
}

// managerFor returns the shard manager and the shard owning guildID, or a gRPC error.
func (s *Server) managerFor(guildID uint64) (*shard.Manager, int, error) {
	m := s.manager.Load()
	if m == nil {
		return nil, 0, status.Error(codes.Unavailable, "the gateway is starting; retry shortly")
	}
	if guildID == 0 {
		return nil, 0, status.Error(codes.InvalidArgument, "guild_id is required")
	}
	count := s.shardCount.Load()
	id := int((guildID >> 22) % uint64(count))
	for _, own := range m.ShardIDs() {
		if own == id {
			return m, id, nil
		}
	}
	return nil, 0, status.Errorf(codes.FailedPrecondition, "guild %d belongs to shard %d, which this gateway pod (%s) does not run; call the pod that owns it", guildID, id, s.cfg.GatewayID)
}

// sendError maps a shard Send error to a gRPC status.
func sendError(err error, shardID int) error {
	switch {
	case errors.Is(err, shard.ErrShardDown):
		return status.Errorf(codes.Unavailable, "shard %d is not connected; retry once it is ready: %v", shardID, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.Errorf(codes.DeadlineExceeded, "shard %d send budget (120 per 60 s) did not free up before the deadline: %v", shardID, err)
	}
	// The connection broke under the write: the shard reconnects by itself.
	return status.Errorf(codes.Unavailable, "sending on shard %d failed; retry once it has reconnected: %v", shardID, err)
}

// snowflake is a Discord id as Discord's JSON wants it: a string, or null for zero.
type snowflake uint64

func (f snowflake) MarshalJSON() ([]byte, error) {
	if f == 0 {
		return []byte("null"), nil
	}
	return []byte(`"` + strconv.FormatUint(uint64(f), 10) + `"`), nil
}

type presenceActivity struct {
	Name  string  `json:"name"`
	Type  int32   `json:"type"`
	URL   *string `json:"url,omitempty"`
	State *string `json:"state,omitempty"`
}

type presenceUpdate struct {
	Since      *int64             `json:"since"`
	Activities []presenceActivity `json:"activities"`
	Status     string             `json:"status"`
	AFK        bool               `json:"afk"`
}

var validStatus = map[string]bool{"online": true, "dnd": true, "idle": true, "invisible": true, "offline": true}

// UpdatePresence implements gatewayv1.GatewayServiceServer (opcode 3 on each shard).
func (s *Server) UpdatePresence(ctx context.Context, req *gatewayv1.UpdatePresenceRequest) (*gatewayv1.UpdatePresenceResponse, error) {
	m := s.manager.Load()
	if m == nil {
		return nil, status.Error(codes.Unavailable, "the gateway is starting; retry shortly")
	}
	if !validStatus[req.GetStatus()] {
		return nil, status.Errorf(codes.InvalidArgument, "status %q must be online, dnd, idle, invisible or offline", req.GetStatus())
	}
	d := presenceUpdate{Status: req.GetStatus(), AFK: req.GetAfk(), Activities: []presenceActivity{}}
	if req.Since != nil {
		since := req.GetSince()
		d.Since = &since
	}
	// Bots may set only an activity's name, type, url and state.
	for _, a := range req.GetActivities() {
		d.Activities = append(d.Activities, presenceActivity{Name: a.GetName(), Type: a.GetType(), URL: a.Url, State: a.State})
	}
	owned := map[int]bool{}
	for _, id := range m.ShardIDs() {
		owned[id] = true
	}
	var targets []int
	if len(req.GetShardIds()) == 0 {
		targets = m.ShardIDs()
	} else {
		for _, id := range req.GetShardIds() {
			if !owned[int(id)] {
				return nil, status.Errorf(codes.FailedPrecondition, "shard %d is not run by this gateway pod (%s)", id, s.cfg.GatewayID)
			}
			targets = append(targets, int(id))
		}
	}
	resp := &gatewayv1.UpdatePresenceResponse{}
	for _, id := range targets {
		if err := m.Send(ctx, id, opPresenceUpdate, d); err != nil {
			return nil, sendError(err, id)
		}
		resp.ShardIds = append(resp.ShardIds, uint32(id))
	}
	return resp, nil
}

type voiceStateUpdate struct {
	GuildID   snowflake `json:"guild_id"`
	ChannelID snowflake `json:"channel_id"`
	SelfMute  bool      `json:"self_mute"`
	SelfDeaf  bool      `json:"self_deaf"`
}

// UpdateVoiceState implements gatewayv1.GatewayServiceServer (opcode 4 on the guild's shard).
func (s *Server) UpdateVoiceState(ctx context.Context, req *gatewayv1.UpdateVoiceStateRequest) (*gatewayv1.UpdateVoiceStateResponse, error) {
	m, id, err := s.managerFor(req.GetGuildId())
	if err != nil {
		return nil, err
	}
	d := voiceStateUpdate{GuildID: snowflake(req.GetGuildId()), ChannelID: snowflake(req.GetChannelId()), SelfMute: req.GetSelfMute(), SelfDeaf: req.GetSelfDeaf()}
	if err := m.Send(ctx, id, opVoiceStateUpdate, d); err != nil {
		return nil, sendError(err, id)
	}
	return &gatewayv1.UpdateVoiceStateResponse{ShardId: uint32(id)}, nil
}

type requestMembers struct {
	GuildID   snowflake   `json:"guild_id"`
	Query     *string     `json:"query,omitempty"`
	Limit     *uint32     `json:"limit,omitempty"`
	Presences bool        `json:"presences,omitempty"`
	UserIDs   []snowflake `json:"user_ids,omitempty"`
	Nonce     string      `json:"nonce"`
}

// RequestGuildMembers implements gatewayv1.GatewayServiceServer: opcode 8, then the chunks
// carrying its nonce, streamed back in arrival order until the last one.
func (s *Server) RequestGuildMembers(req *gatewayv1.RequestGuildMembersRequest, stream gatewayv1.GatewayService_RequestGuildMembersServer) error {
	if req.Query != nil && len(req.GetUserIds()) > 0 {
		return status.Error(codes.InvalidArgument, "set either query or user_ids, not both")
	}
	if req.Query == nil && len(req.GetUserIds()) == 0 {
		return status.Error(codes.InvalidArgument, `set query (a username prefix, or "" with limit 0 for every member) or user_ids`)
	}
	if n := len(req.GetUserIds()); n > maxRequestedUserIDs {
		return status.Errorf(codes.InvalidArgument, "%d user_ids requested; Discord accepts at most %d per request", n, maxRequestedUserIDs)
	}
	if n := len(req.GetNonce()); n > maxNonceBytes {
		return status.Errorf(codes.InvalidArgument, "nonce is %d bytes; Discord accepts at most %d", n, maxNonceBytes)
	}
	m, id, err := s.managerFor(req.GetGuildId())
	if err != nil {
		return err
	}
	nonce := req.GetNonce()
	if nonce == "" {
		nonce = newNonce()
	}
	w, ok := s.chunks.add(nonce)
	if !ok {
		return status.Errorf(codes.AlreadyExists, "a request with nonce %q is already waiting for its chunks; use a unique nonce", nonce)
	}
	defer s.chunks.remove(nonce)

	d := requestMembers{GuildID: snowflake(req.GetGuildId()), Query: req.Query, Presences: req.GetPresences(), Nonce: nonce}
	if req.Query != nil {
		limit := req.GetLimit()
		d.Limit = &limit
	}
	for _, u := range req.GetUserIds() {
		d.UserIDs = append(d.UserIDs, snowflake(u))
	}
	ctx := stream.Context()
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.MemberChunkTimeout)
		defer cancel()
	}
	if raw, err := json.Marshal(d); err == nil && len(raw)+len(`{"op":8,"d":}`) > maxGatewayPayload {
		return status.Errorf(codes.InvalidArgument, "request is %d bytes; the gateway accepts payloads up to %d", len(raw), maxGatewayPayload)
	}
	if err := m.Send(ctx, id, opRequestMembers, d); err != nil {
		return sendError(err, id)
	}
	got := 0
	for {
		select {
		case c := <-w.chunks:
			if err := stream.Send(&gatewayv1.RequestGuildMembersResponse{Chunk: c, ShardId: uint32(id)}); err != nil {
				return fmt.Errorf("sending a member chunk: %w", err)
			}
			got++
			if c.GetChunkIndex() >= c.GetChunkCount()-1 || got >= int(c.GetChunkCount()) {
				return nil
			}
		case rl := <-w.limited:
			retry := time.Duration(rl.GetRetryAfter() * float64(time.Second))
			st := status.Newf(codes.ResourceExhausted, "Discord rate limited Request Guild Members for guild %d; retry after %s", req.GetGuildId(), retry)
			if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
				st = withInfo
			}
			return st.Err()
		case <-w.overflow:
			if s.draining.Load() {
				return status.Error(codes.Unavailable, "the gateway is shutting down; retry on another pod")
			}
			return status.Errorf(codes.ResourceExhausted, "this call fell %d chunks behind and was dropped so the shard is not stalled; read the stream faster or request fewer members", chunkBuffer)
		case <-ctx.Done():
			if stream.Context().Err() != nil {
				return status.FromContextError(stream.Context().Err()).Err()
			}
			return status.Errorf(codes.DeadlineExceeded, "received %d member chunks for nonce %q before the deadline; Discord may have dropped the request (missing GUILD_MEMBERS intent, or an invalid nonce)", got, nonce)
		}
	}
}

// SendCommand implements gatewayv1.GatewayServiceServer for commands without a typed RPC.
func (s *Server) SendCommand(ctx context.Context, req *gatewayv1.SendCommandRequest) (*gatewayv1.SendCommandResponse, error) {
	switch req.GetOp() {
	case 1, 2, 6:
		return nil, status.Errorf(codes.InvalidArgument, "opcode %d (heartbeat, identify, resume) belongs to the gateway's session and cannot be sent", req.GetOp())
	}
	if len(req.GetData()) > maxGatewayPayload {
		return nil, status.Errorf(codes.InvalidArgument, "data is %d bytes; the gateway accepts payloads up to %d", len(req.GetData()), maxGatewayPayload)
	}
	if !json.Valid(req.GetData()) {
		return nil, status.Error(codes.InvalidArgument, "data is not valid JSON")
	}
	var m *shard.Manager
	var id int
	if req.GetGuildId() != 0 {
		var err error
		if m, id, err = s.managerFor(req.GetGuildId()); err != nil {
			return nil, err
		}
	} else {
		if m = s.manager.Load(); m == nil {
			return nil, status.Error(codes.Unavailable, "the gateway is starting; retry shortly")
		}
		id = int(req.GetShardId())
		found := false
		for _, own := range m.ShardIDs() {
			found = found || own == id
		}
		if !found {
			return nil, status.Errorf(codes.FailedPrecondition, "shard %d is not run by this gateway pod (%s)", id, s.cfg.GatewayID)
		}
	}
	if err := m.Send(ctx, id, int(req.GetOp()), json.RawMessage(req.GetData())); err != nil {
		if errors.Is(err, shard.ErrShardDown) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, sendError(err, id)
		}
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return &gatewayv1.SendCommandResponse{ShardId: uint32(id)}, nil
}
