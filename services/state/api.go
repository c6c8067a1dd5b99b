package state

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

// Limits of the API.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxBatch        = 1000
	pageTokenPrefix = "after:"
)

// ready returns the cache, or UNAVAILABLE while the service is starting.
func (s *Server) ready() (*cache.Cache, error) {
	c := s.cache.Load()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "the state service is starting: retry shortly")
	}
	return c, nil
}

// prepare checks the service is up and waits for the request's Consistency.
func (s *Server) prepare(ctx context.Context, cons *statev1.Consistency) (*cache.Cache, error) {
	c, err := s.ready()
	if err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, c, cons); err != nil {
		return nil, err
	}
	return c, nil
}

// waitFor blocks until the shard's applied sequence reaches cons.min_sequence, bounded by
// max_wait (default DefaultWait, capped at MaxWait) and the call's deadline. It wakes on every
// locally applied event and polls the store for events other replicas apply (Redis).
func (s *Server) waitFor(ctx context.Context, c *cache.Cache, cons *statev1.Consistency) error {
	if cons == nil || cons.GetMinSequence() == 0 {
		return nil
	}
	wait := s.cfg.DefaultWait
	if mw := cons.GetMaxWait(); mw != nil {
		if err := mw.CheckValid(); err != nil || mw.AsDuration() < 0 {
			return status.Errorf(codes.InvalidArgument, "consistency.max_wait %v is not a valid non-negative duration", mw)
		}
		if mw.AsDuration() > 0 {
			wait = min(mw.AsDuration(), s.cfg.MaxWait)
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	shard, want := cons.GetShardId(), cons.GetMinSequence()
	for {
		changed := c.Changed() // taken before reading, so no applied event is missed
		seq, err := appliedSequence(ctx, c.Store(), shard)
		if err != nil {
			return status.Errorf(codes.Unavailable, "reading shard %d progress: %v", shard, err)
		}
		if seq >= want {
			return nil
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-timer.C:
			return status.Errorf(codes.DeadlineExceeded,
				"shard %d has applied events up to sequence %d, not yet %d, after waiting %s (consistency.max_wait)", shard, seq, want, wait)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

func appliedSequence(ctx context.Context, st cache.Store, shard uint32) (uint64, error) {
	prog, err := st.Progress(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range prog {
		if p.ShardID == shard {
			return p.Sequence, nil
		}
	}
	return 0, nil
}

func required(name string, v uint64) error {
	if v == 0 {
		return status.Errorf(codes.InvalidArgument, "%s is required: a Discord snowflake, not 0", name)
	}
	return nil
}

func (s *Server) enabled(on bool, what, flag string) error {
	if !on {
		return status.Errorf(codes.FailedPrecondition, "%s are not cached: this state service runs with --%s=false", what, flag)
	}
	return nil
}

// storeErr turns a store error into a status: ErrNotFound becomes NOT_FOUND with msg, other
// errors UNAVAILABLE (the store, e.g. Redis, is unreachable).
func storeErr(err error, format string, a ...any) error {
	if errors.Is(err, cache.ErrNotFound) {
		return status.Errorf(codes.NotFound, format, a...)
	}
	return status.Errorf(codes.Unavailable, "reading the cache: %v", err)
}

func decode[M proto.Message](blob []byte, msg M, what string) (M, error) {
	if err := cache.Decode(blob, msg, what); err != nil {
		return msg, status.Error(codes.Internal, err.Error())
	}
	return msg, nil
}

func (s *Server) guild(ctx context.Context, c *cache.Cache, id uint64) (*discordv1.Guild, error) {
	blob, err := c.Store().Guild(ctx, id)
	if err != nil {
		return nil, storeErr(err, "guild %d is not cached (the bot is not in it, or its GUILD_CREATE has not arrived)", id)
	}
	return decode(blob, &discordv1.Guild{}, "guild")
}

// GetGuild implements statev1.StateServiceServer.
func (s *Server) GetGuild(ctx context.Context, req *statev1.GetGuildRequest) (*statev1.GetGuildResponse, error) {
	if err := required("guild_id", req.GetGuildId()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	g, err := s.guild(ctx, c, req.GetGuildId())
	if err != nil {
		return nil, err
	}
	return &statev1.GetGuildResponse{Guild: g}, nil
}

func (s *Server) channel(ctx context.Context, c *cache.Cache, id uint64) (*discordv1.Channel, error) {
	blob, err := c.Store().Channel(ctx, id)
	if err != nil {
		return nil, storeErr(err, "channel %d is not cached", id)
	}
	return decode(blob, &discordv1.Channel{}, "channel")
}

// GetChannel implements statev1.StateServiceServer.
func (s *Server) GetChannel(ctx context.Context, req *statev1.GetChannelRequest) (*statev1.GetChannelResponse, error) {
	if err := required("channel_id", req.GetChannelId()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	ch, err := s.channel(ctx, c, req.GetChannelId())
	if err != nil {
		return nil, err
	}
	return &statev1.GetChannelResponse{Channel: ch}, nil
}

// GetRole implements statev1.StateServiceServer.
func (s *Server) GetRole(ctx context.Context, req *statev1.GetRoleRequest) (*statev1.GetRoleResponse, error) {
	if err := errors.Join(required("guild_id", req.GetGuildId()), required("role_id", req.GetRoleId())); err != nil {
		return nil, firstStatus(err)
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Roles, "roles", "cache-roles"); err != nil {
		return nil, err
	}
	g, err := s.guild(ctx, c, req.GetGuildId())
	if err != nil {
		return nil, err
	}
	for _, r := range g.GetRoles() {
		if r.GetId() == req.GetRoleId() {
			return &statev1.GetRoleResponse{Role: r}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "role %d is not a cached role of guild %d", req.GetRoleId(), req.GetGuildId())
}

// firstStatus returns the first status error of a joined error.
func firstStatus(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()[0]
	}
	return err
}

func (s *Server) member(ctx context.Context, c *cache.Cache, guildID, userID uint64) (*discordv1.Member, error) {
	mb, err := c.Store().Member(ctx, guildID, userID)
	if err != nil {
		return nil, storeErr(err, "member %d of guild %d is not cached (not a member, or not chunked yet)", userID, guildID)
	}
	m, err := cache.DecodeMember(mb)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return m, nil
}

// GetMember implements statev1.StateServiceServer.
func (s *Server) GetMember(ctx context.Context, req *statev1.GetMemberRequest) (*statev1.GetMemberResponse, error) {
	if err := errors.Join(required("guild_id", req.GetGuildId()), required("user_id", req.GetUserId())); err != nil {
		return nil, firstStatus(err)
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Members, "members", "cache-members"); err != nil {
		return nil, err
	}
	m, err := s.member(ctx, c, req.GetGuildId(), req.GetUserId())
	if err != nil {
		return nil, err
	}
	return &statev1.GetMemberResponse{Member: m}, nil
}

// GetUser implements statev1.StateServiceServer.
func (s *Server) GetUser(ctx context.Context, req *statev1.GetUserRequest) (*statev1.GetUserResponse, error) {
	if err := required("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Users, "users", "cache-users"); err != nil {
		return nil, err
	}
	blob, err := c.Store().User(ctx, req.GetUserId())
	if err != nil {
		return nil, storeErr(err, "user %d is not cached (users are kept while a cached guild has them as member)", req.GetUserId())
	}
	u, err := decode(blob, &discordv1.User{}, "user")
	if err != nil {
		return nil, err
	}
	return &statev1.GetUserResponse{User: u}, nil
}

// GetEmoji implements statev1.StateServiceServer.
func (s *Server) GetEmoji(ctx context.Context, req *statev1.GetEmojiRequest) (*statev1.GetEmojiResponse, error) {
	if err := errors.Join(required("guild_id", req.GetGuildId()), required("emoji_id", req.GetEmojiId())); err != nil {
		return nil, firstStatus(err)
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Emojis, "emojis", "cache-emojis"); err != nil {
		return nil, err
	}
	g, err := s.guild(ctx, c, req.GetGuildId())
	if err != nil {
		return nil, err
	}
	for _, e := range g.GetEmojis() {
		if e.GetId() == req.GetEmojiId() {
			return &statev1.GetEmojiResponse{Emoji: e}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "emoji %d is not a cached emoji of guild %d", req.GetEmojiId(), req.GetGuildId())
}

// withMember attaches the cached member (if any) to a voice state.
func (s *Server) withMember(ctx context.Context, c *cache.Cache, v *discordv1.VoiceState) {
	if mb, err := c.Store().Member(ctx, v.GetGuildId(), v.GetUserId()); err == nil {
		if m, err := cache.DecodeMember(mb); err == nil {
			v.Member = m
		}
	}
}

// GetVoiceState implements statev1.StateServiceServer.
func (s *Server) GetVoiceState(ctx context.Context, req *statev1.GetVoiceStateRequest) (*statev1.GetVoiceStateResponse, error) {
	if err := errors.Join(required("guild_id", req.GetGuildId()), required("user_id", req.GetUserId())); err != nil {
		return nil, firstStatus(err)
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().VoiceStates, "voice states", "cache-voice-states"); err != nil {
		return nil, err
	}
	blob, err := c.Store().VoiceState(ctx, req.GetGuildId(), req.GetUserId())
	if err != nil {
		return nil, storeErr(err, "user %d is not in a voice channel of guild %d (or the guild is not cached)", req.GetUserId(), req.GetGuildId())
	}
	v, err := decode(blob, &discordv1.VoiceState{}, "voice state")
	if err != nil {
		return nil, err
	}
	s.withMember(ctx, c, v)
	return &statev1.GetVoiceStateResponse{VoiceState: v}, nil
}

// GetPresence implements statev1.StateServiceServer.
func (s *Server) GetPresence(ctx context.Context, req *statev1.GetPresenceRequest) (*statev1.GetPresenceResponse, error) {
	if err := errors.Join(required("guild_id", req.GetGuildId()), required("user_id", req.GetUserId())); err != nil {
		return nil, firstStatus(err)
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Presences, "presences", "cache-presences"); err != nil {
		return nil, err
	}
	blob, err := c.Store().Presence(ctx, req.GetGuildId(), req.GetUserId())
	if err != nil {
		return nil, storeErr(err, "no presence of user %d in guild %d: offline, or not cached", req.GetUserId(), req.GetGuildId())
	}
	p, err := decode(blob, &discordv1.Presence{}, "presence")
	if err != nil {
		return nil, err
	}
	if ub, err := c.Store().User(ctx, req.GetUserId()); err == nil {
		if u, err := decode(ub, &discordv1.User{}, "user"); err == nil {
			p.User = u
		}
	}
	return &statev1.GetPresenceResponse{Presence: p}, nil
}

// page validates a page size and token and returns the size and the id to start after.
func page(size int32, token string) (int, uint64, error) {
	switch {
	case size == 0:
		size = defaultPageSize
	case size < 0 || size > maxPageSize:
		return 0, 0, status.Errorf(codes.InvalidArgument, "page_size %d is out of range: use 1..%d (0 = %d)", size, maxPageSize, defaultPageSize)
	}
	if token == "" {
		return int(size), 0, nil
	}
	rest, ok := strings.CutPrefix(token, pageTokenPrefix)
	after, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil {
		return 0, 0, status.Errorf(codes.InvalidArgument, "page_token %q is malformed: pass next_page_token of the previous response unchanged", token)
	}
	return int(size), after, nil
}

func nextToken(last uint64) string { return pageTokenPrefix + strconv.FormatUint(last, 10) }

// ListGuilds implements statev1.StateServiceServer.
func (s *Server) ListGuilds(ctx context.Context, req *statev1.ListGuildsRequest) (*statev1.ListGuildsResponse, error) {
	size, after, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	ids, err := c.Store().GuildIDs(ctx, after, size+1)
	if err != nil {
		return nil, storeErr(err, "not cached")
	}
	resp := &statev1.ListGuildsResponse{}
	if len(ids) > size {
		ids = ids[:size]
		resp.NextPageToken = nextToken(ids[size-1])
	}
	for _, id := range ids {
		g, err := s.guild(ctx, c, id)
		if status.Code(err) == codes.NotFound {
			continue // left between listing and reading
		}
		if err != nil {
			return nil, err
		}
		resp.Guilds = append(resp.Guilds, g)
	}
	return resp, nil
}

func decodeMembers(mbs []cache.MemberBlob) ([]*discordv1.Member, error) {
	out := make([]*discordv1.Member, 0, len(mbs))
	for _, mb := range mbs {
		m, err := cache.DecodeMember(mb)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		out = append(out, m)
	}
	return out, nil
}

// ListMembers implements statev1.StateServiceServer.
func (s *Server) ListMembers(ctx context.Context, req *statev1.ListMembersRequest) (*statev1.ListMembersResponse, error) {
	if err := required("guild_id", req.GetGuildId()); err != nil {
		return nil, err
	}
	size, after, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Members, "members", "cache-members"); err != nil {
		return nil, err
	}
	mbs, err := c.Store().Members(ctx, req.GetGuildId(), after, size+1)
	if err != nil {
		return nil, storeErr(err, "guild %d is not cached", req.GetGuildId())
	}
	resp := &statev1.ListMembersResponse{}
	if len(mbs) > size {
		mbs = mbs[:size]
		resp.NextPageToken = nextToken(mbs[size-1].UserID)
	}
	if resp.Members, err = decodeMembers(mbs); err != nil {
		return nil, err
	}
	return resp, nil
}

// ListChannels implements statev1.StateServiceServer.
func (s *Server) ListChannels(ctx context.Context, req *statev1.ListChannelsRequest) (*statev1.ListChannelsResponse, error) {
	if err := required("guild_id", req.GetGuildId()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Channels, "channels", "cache-channels"); err != nil {
		return nil, err
	}
	blobs, err := c.Store().GuildChannels(ctx, req.GetGuildId(), req.GetIncludeThreads())
	if err != nil {
		return nil, storeErr(err, "guild %d is not cached", req.GetGuildId())
	}
	resp := &statev1.ListChannelsResponse{Channels: make([]*discordv1.Channel, 0, len(blobs))}
	for _, b := range blobs {
		ch, err := decode(b, &discordv1.Channel{}, "channel")
		if err != nil {
			return nil, err
		}
		resp.Channels = append(resp.Channels, ch)
	}
	slices.SortFunc(resp.Channels, func(a, b *discordv1.Channel) int {
		return cmp.Or(cmp.Compare(a.GetPosition(), b.GetPosition()), cmp.Compare(a.GetId(), b.GetId()))
	})
	return resp, nil
}

// ListRoles implements statev1.StateServiceServer.
func (s *Server) ListRoles(ctx context.Context, req *statev1.ListRolesRequest) (*statev1.ListRolesResponse, error) {
	if err := required("guild_id", req.GetGuildId()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Roles, "roles", "cache-roles"); err != nil {
		return nil, err
	}
	g, err := s.guild(ctx, c, req.GetGuildId())
	if err != nil {
		return nil, err
	}
	roles := g.GetRoles()
	slices.SortFunc(roles, func(a, b *discordv1.Role) int {
		return cmp.Or(cmp.Compare(a.GetPosition(), b.GetPosition()), cmp.Compare(a.GetId(), b.GetId()))
	})
	return &statev1.ListRolesResponse{Roles: roles}, nil
}

// ListVoiceStates implements statev1.StateServiceServer.
func (s *Server) ListVoiceStates(ctx context.Context, req *statev1.ListVoiceStatesRequest) (*statev1.ListVoiceStatesResponse, error) {
	if err := required("guild_id", req.GetGuildId()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().VoiceStates, "voice states", "cache-voice-states"); err != nil {
		return nil, err
	}
	blobs, err := c.Store().VoiceStates(ctx, req.GetGuildId())
	if err != nil {
		return nil, storeErr(err, "guild %d is not cached", req.GetGuildId())
	}
	resp := &statev1.ListVoiceStatesResponse{}
	for _, b := range blobs {
		v, err := decode(b, &discordv1.VoiceState{}, "voice state")
		if err != nil {
			return nil, err
		}
		if req.GetChannelId() == 0 || v.GetChannelId() == req.GetChannelId() {
			s.withMember(ctx, c, v)
			resp.VoiceStates = append(resp.VoiceStates, v)
		}
	}
	slices.SortFunc(resp.VoiceStates, func(a, b *discordv1.VoiceState) int { return cmp.Compare(a.GetUserId(), b.GetUserId()) })
	return resp, nil
}

// checkIDs validates a batch of ids.
func checkIDs(name string, ids []uint64) error {
	if len(ids) == 0 {
		return status.Errorf(codes.InvalidArgument, "%s is empty: name at least one id", name)
	}
	if len(ids) > maxBatch {
		return status.Errorf(codes.InvalidArgument, "%s has %d ids: at most %d per call", name, len(ids), maxBatch)
	}
	for i, v := range ids {
		if v == 0 {
			return status.Errorf(codes.InvalidArgument, "%s[%d] is 0: ids are Discord snowflakes", name, i)
		}
	}
	return nil
}

// BatchGetMembers implements statev1.StateServiceServer.
func (s *Server) BatchGetMembers(ctx context.Context, req *statev1.BatchGetMembersRequest) (*statev1.BatchGetMembersResponse, error) {
	if err := errors.Join(required("guild_id", req.GetGuildId()), checkIDs("user_ids", req.GetUserIds())); err != nil {
		return nil, firstStatus(err)
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Members, "members", "cache-members"); err != nil {
		return nil, err
	}
	mbs, err := c.Store().MembersByID(ctx, req.GetGuildId(), req.GetUserIds())
	if err != nil {
		return nil, storeErr(err, "not cached")
	}
	resp := &statev1.BatchGetMembersResponse{}
	if resp.Members, err = decodeMembers(mbs); err != nil {
		return nil, err
	}
	found := make(map[uint64]bool, len(mbs))
	for _, mb := range mbs {
		found[mb.UserID] = true
	}
	for _, id := range req.GetUserIds() {
		if !found[id] {
			resp.NotFound = append(resp.NotFound, id)
		}
	}
	return resp, nil
}

// BatchGetUsers implements statev1.StateServiceServer.
func (s *Server) BatchGetUsers(ctx context.Context, req *statev1.BatchGetUsersRequest) (*statev1.BatchGetUsersResponse, error) {
	if err := checkIDs("user_ids", req.GetUserIds()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Users, "users", "cache-users"); err != nil {
		return nil, err
	}
	resp := &statev1.BatchGetUsersResponse{}
	for _, id := range req.GetUserIds() {
		blob, err := c.Store().User(ctx, id)
		if errors.Is(err, cache.ErrNotFound) {
			resp.NotFound = append(resp.NotFound, id)
			continue
		}
		if err != nil {
			return nil, storeErr(err, "not cached")
		}
		u, err := decode(blob, &discordv1.User{}, "user")
		if err != nil {
			return nil, err
		}
		resp.Users = append(resp.Users, u)
	}
	return resp, nil
}

// BatchGetChannels implements statev1.StateServiceServer.
func (s *Server) BatchGetChannels(ctx context.Context, req *statev1.BatchGetChannelsRequest) (*statev1.BatchGetChannelsResponse, error) {
	if err := checkIDs("channel_ids", req.GetChannelIds()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	resp := &statev1.BatchGetChannelsResponse{}
	for _, id := range req.GetChannelIds() {
		ch, err := s.channel(ctx, c, id)
		if status.Code(err) == codes.NotFound {
			resp.NotFound = append(resp.NotFound, id)
			continue
		}
		if err != nil {
			return nil, err
		}
		resp.Channels = append(resp.Channels, ch)
	}
	return resp, nil
}

// ListMutualGuilds implements statev1.StateServiceServer.
func (s *Server) ListMutualGuilds(ctx context.Context, req *statev1.ListMutualGuildsRequest) (*statev1.ListMutualGuildsResponse, error) {
	if err := required("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Members, "members", "cache-members"); err != nil {
		return nil, err
	}
	ids, err := c.Store().UserGuilds(ctx, req.GetUserId())
	if err != nil {
		return nil, storeErr(err, "not cached")
	}
	return &statev1.ListMutualGuildsResponse{GuildIds: ids}, nil
}

// ComputePermissions implements statev1.StateServiceServer.
func (s *Server) ComputePermissions(ctx context.Context, req *statev1.ComputePermissionsRequest) (*statev1.ComputePermissionsResponse, error) {
	if err := errors.Join(required("guild_id", req.GetGuildId()), required("user_id", req.GetUserId())); err != nil {
		return nil, firstStatus(err)
	}
	c, err := s.prepare(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.enabled(c.Resources().Roles, "roles", "cache-roles"); err != nil {
		return nil, err
	}
	g, err := s.guild(ctx, c, req.GetGuildId())
	if err != nil {
		return nil, err
	}
	var m *discordv1.Member
	if g.GetOwnerId() != req.GetUserId() {
		if err := s.enabled(c.Resources().Members, "members", "cache-members"); err != nil {
			return nil, err
		}
		if m, err = s.member(ctx, c, req.GetGuildId(), req.GetUserId()); err != nil {
			return nil, err
		}
	}
	r := basePermissions(g, m, req.GetUserId())
	if chID := req.GetChannelId(); chID != 0 {
		if err := s.enabled(c.Resources().Channels, "channels", "cache-channels"); err != nil {
			return nil, err
		}
		ch, err := s.channel(ctx, c, chID)
		if err != nil {
			return nil, err
		}
		if ch.GetGuildId() != req.GetGuildId() {
			return nil, status.Errorf(codes.InvalidArgument, "channel %d belongs to guild %d, not to guild %d", chID, ch.GetGuildId(), req.GetGuildId())
		}
		var parent *discordv1.Channel
		if ch.GetThreadMetadata() != nil || isThreadType(ch.GetType()) {
			if parent, err = s.channel(ctx, c, ch.GetParentId()); err != nil {
				return nil, status.Errorf(codes.NotFound, "thread %d: its parent channel %d is not cached", chID, ch.GetParentId())
			}
		}
		r.perms = channelPermissions(r, ch, parent, req.GetGuildId(), m, req.GetUserId())
	}
	applyTimeout(&r, m, s.cfg.Now())
	resp := &statev1.ComputePermissionsResponse{Permissions: r.perms, IsOwner: r.owner, IsAdministrator: r.admin, TimedOut: r.timedOut}
	if r.timedOut {
		resp.TimedOutUntil = timestamppb.New(r.until)
	}
	return resp, nil
}

func isThreadType(t int32) bool { return t == 10 || t == 11 || t == 12 }

// GetStats implements statev1.StateServiceServer.
func (s *Server) GetStats(ctx context.Context, _ *statev1.GetStatsRequest) (*statev1.GetStatsResponse, error) {
	c, err := s.ready()
	if err != nil {
		return nil, err
	}
	n, err := c.Store().Counts(ctx)
	if err != nil {
		return nil, storeErr(err, "not cached")
	}
	prog, err := c.Store().Progress(ctx)
	if err != nil {
		return nil, storeErr(err, "not cached")
	}
	resp := &statev1.GetStatsResponse{
		Guilds: n.Guilds, UnavailableGuilds: n.UnavailableGuilds, Channels: n.Channels, Threads: n.Threads,
		Roles: n.Roles, Members: n.Members, Users: n.Users, Emojis: n.Emojis, Stickers: n.Stickers,
		VoiceStates: n.VoiceStates, Presences: n.Presences, MemoryBytes: n.MemoryBytes,
		Store: c.Store().Kind(), EventsApplied: c.Applied(),
	}
	for _, p := range prog {
		resp.Shards = append(resp.Shards, &statev1.ShardProgress{ShardId: p.ShardID, LastSequence: p.Sequence,
			SessionId: p.SessionID, AppliedAt: timestamppb.New(p.AppliedAt)})
	}
	return resp, nil
}
