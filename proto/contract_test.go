package proto_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
)

// The imports register every generated file; these references keep them.
var _ = []proto.Message{&discordv1.Event{}, &gatewayv1.Delivery{}, &statev1.Consistency{}, &restv1.DoRequest{}}

// kubecordFiles returns the registered descriptors of the contract's files.
func kubecordFiles(t *testing.T) []protoreflect.FileDescriptor {
	t.Helper()
	var files []protoreflect.FileDescriptor
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if strings.HasPrefix(string(fd.Package()), "kubecord.") {
			files = append(files, fd)
		}
		return true
	})
	if len(files) < 4 {
		t.Fatalf("found %d kubecord.* files in the registry, want the whole contract", len(files))
	}
	return files
}

// eachField calls fn for every field of every message (nested ones included) of the contract.
func eachField(t *testing.T, fn func(fd protoreflect.FieldDescriptor)) {
	t.Helper()
	var walk func(protoreflect.MessageDescriptors)
	walk = func(mds protoreflect.MessageDescriptors) {
		for i := range mds.Len() {
			md := mds.Get(i)
			if md.IsMapEntry() {
				continue
			}
			for j := range md.Fields().Len() {
				fn(md.Fields().Get(j))
			}
			walk(md.Messages())
		}
	}
	for _, f := range kubecordFiles(t) {
		walk(f.Messages())
	}
}

// notSnowflake lists the id-named fields that are not snowflakes, with Discord's type for them.
var notSnowflake = map[protoreflect.FullName]string{
	"kubecord.discord.v1.Component.id":                         "int32 component identifier",
	"kubecord.discord.v1.ActivityParty.id":                     "free-form string",
	"kubecord.discord.v1.IntegrationAccount.id":                "external account id, a string",
	"kubecord.discord.v1.AuditLogEntry.target_id":              "string, not always a snowflake",
	"kubecord.discord.v1.PollAnswer.answer_id":                 "small integer",
	"kubecord.discord.v1.PollAnswerCount.id":                   "poll answer id, a small integer",
	"kubecord.discord.v1.MessagePollVoteAdd.answer_id":         "poll answer id",
	"kubecord.discord.v1.MessagePollVoteRemove.answer_id":      "poll answer id",
	"kubecord.discord.v1.VoiceChannelEffectSend.sound_id":      "snowflake or integer",
	"kubecord.discord.v1.VoiceChannelEffectSend.animation_id":  "integer",
	"kubecord.discord.v1.MessageActivity.party_id":             "free-form string",
	"kubecord.discord.v1.Event.session_id":                     "gateway session id string",
	"kubecord.discord.v1.Ready.session_id":                     "gateway session id string",
	"kubecord.discord.v1.VoiceState.session_id":                "voice session id string",
	"kubecord.discord.v1.EventId.shard_id":                     "shard number",
	"kubecord.discord.v1.Event.shard_id":                       "shard number",
	"kubecord.discord.v1.Component.custom_id":                  "developer string",
	"kubecord.discord.v1.InteractionData.custom_id":            "developer string",
	"kubecord.gateway.v1.Subscribe.member_id":                  "consumer member name",
	"kubecord.gateway.v1.Subscribed.member_id":                 "consumer member name",
	"kubecord.gateway.v1.Subscribed.gateway_id":                "gateway pod name",
	"kubecord.gateway.v1.ListShardsResponse.gateway_id":        "gateway pod name",
	"kubecord.gateway.v1.GroupMember.member_id":                "consumer member name",
	"kubecord.gateway.v1.Delivery.delivery_id":                 "delivery counter",
	"kubecord.gateway.v1.Shard.shard_id":                       "shard number",
	"kubecord.gateway.v1.Shard.session_id":                     "gateway session id string",
	"kubecord.gateway.v1.UpdateVoiceStateResponse.shard_id":    "shard number",
	"kubecord.gateway.v1.SendCommandRequest.shard_id":          "shard number",
	"kubecord.gateway.v1.SendCommandResponse.shard_id":         "shard number",
	"kubecord.gateway.v1.GetShardRequest.shard_id":             "shard number",
	"kubecord.gateway.v1.RequestGuildMembersResponse.shard_id": "shard number",
	"kubecord.state.v1.Consistency.shard_id":                   "shard number",
	"kubecord.state.v1.ShardProgress.shard_id":                 "shard number",
	"kubecord.state.v1.ShardProgress.session_id":               "gateway session id string",
	"kubecord.rest.v1.InteractionCallbackData.custom_id":       "developer string",
}

// notSnowflakeList lists the ids-named repeated fields that are not snowflakes.
var notSnowflakeList = map[protoreflect.FullName]string{
	"kubecord.gateway.v1.Subscribe.shard_ids":              "shard numbers",
	"kubecord.gateway.v1.Subscribed.shard_ids":             "shard numbers",
	"kubecord.gateway.v1.UpdatePresenceRequest.shard_ids":  "shard numbers",
	"kubecord.gateway.v1.UpdatePresenceResponse.shard_ids": "shard numbers",
	"kubecord.gateway.v1.Ack.delivery_ids":                 "delivery counters",
	"kubecord.gateway.v1.Nack.delivery_ids":                "delivery counters",
}

func TestSnowflakesAreFixed64(t *testing.T) {
	t.Parallel()
	used := map[protoreflect.FullName]bool{}
	eachField(t, func(fd protoreflect.FieldDescriptor) {
		name := string(fd.Name())
		switch {
		case name == "id" || strings.HasSuffix(name, "_id"):
			if _, ok := notSnowflake[fd.FullName()]; ok {
				used[fd.FullName()] = true
				return
			}
			if fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == "kubecord.discord.v1.EventId" {
				return // (shard, sequence) identity of an event
			}
			if fd.Kind() != protoreflect.Fixed64Kind || fd.IsList() {
				t.Errorf("%s is %s%s, want a singular fixed64 snowflake (or list it in notSnowflake with the reason)",
					fd.FullName(), listPrefix(fd), fd.Kind())
			}
		case strings.HasSuffix(name, "_ids"):
			if _, ok := notSnowflakeList[fd.FullName()]; ok {
				used[fd.FullName()] = true
				return
			}
			if fd.Kind() != protoreflect.Fixed64Kind || !fd.IsList() {
				t.Errorf("%s is %s%s, want repeated fixed64 snowflakes (or list it in notSnowflakeList with the reason)",
					fd.FullName(), listPrefix(fd), fd.Kind())
			}
		}
	})
	// A stale exception hides nothing today but would excuse a future mistake: keep the lists exact.
	for name := range notSnowflake {
		if !used[name] {
			t.Errorf("notSnowflake lists %s, which is not an id field of the contract", name)
		}
	}
	for name := range notSnowflakeList {
		if !used[name] {
			t.Errorf("notSnowflakeList lists %s, which is not an ids field of the contract", name)
		}
	}
}

func listPrefix(fd protoreflect.FieldDescriptor) string {
	if fd.IsList() {
		return "repeated "
	}
	return ""
}

func TestPermissionsAreUint64(t *testing.T) {
	t.Parallel()
	seen := 0
	eachField(t, func(fd protoreflect.FieldDescriptor) {
		switch fd.Name() {
		case "permissions", "app_permissions", "allow", "deny":
		default:
			return
		}
		if fd.Kind() == protoreflect.MessageKind {
			return // lists of permission objects, e.g. ApplicationCommandPermissionsUpdate.permissions
		}
		seen++
		if fd.Kind() != protoreflect.Uint64Kind || fd.IsList() {
			t.Errorf("%s is %s, want a uint64 permission bitfield", fd.FullName(), fd.Kind())
		}
	})
	if seen < 6 {
		t.Errorf("checked %d permission fields, want at least 6 (Role, Member, Channel, overwrites, Interaction, state)", seen)
	}
}

// notTimestamp lists time-named fields Discord sends as integers, with their unit.
var notTimestamp = map[protoreflect.FullName]string{
	"kubecord.discord.v1.Activity.created_at":                          "unix milliseconds",
	"kubecord.discord.v1.TypingStart.timestamp":                        "unix seconds",
	"kubecord.discord.v1.ChannelInfoChannel.voice_start_time":          "unix seconds",
	"kubecord.discord.v1.VoiceChannelStartTimeUpdate.voice_start_time": "unix seconds",
	"kubecord.gateway.v1.UpdatePresenceRequest.since":                  "unix milliseconds",
}

func TestTimesAreTimestamps(t *testing.T) {
	t.Parallel()
	timeName := regexp.MustCompile(`(^|_)(timestamp|at|until|since|time)$`)
	used := map[protoreflect.FullName]bool{}
	eachField(t, func(fd protoreflect.FieldDescriptor) {
		if !timeName.MatchString(string(fd.Name())) {
			return
		}
		if _, ok := notTimestamp[fd.FullName()]; ok {
			used[fd.FullName()] = true
			return
		}
		if fd.Kind() != protoreflect.MessageKind || fd.Message().FullName() != "google.protobuf.Timestamp" {
			t.Errorf("%s is %s, want google.protobuf.Timestamp (or list it in notTimestamp with its unit)", fd.FullName(), fd.Kind())
		}
	})
	for name := range notTimestamp {
		if !used[name] {
			t.Errorf("notTimestamp lists %s, which is not a time field of the contract", name)
		}
	}
}

func TestInlineFields(t *testing.T) {
	t.Parallel()
	inlineCount := 0
	eachField(t, func(fd protoreflect.FieldDescriptor) {
		opts, ok := fd.Options().(*descriptorpb.FieldOptions)
		if !ok || !proto.GetExtension(opts, discordv1.E_Inline).(bool) {
			return
		}
		inlineCount++
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
			t.Errorf("%s is inline but not a singular message field", fd.FullName())
		}
		parent := fd.ContainingMessage()
		for i := range parent.Fields().Len() {
			other := parent.Fields().Get(i)
			if other == fd {
				continue
			}
			if o, ok := other.Options().(*descriptorpb.FieldOptions); ok && proto.GetExtension(o, discordv1.E_Inline).(bool) {
				t.Errorf("%s has two inline fields: %s and %s", parent.FullName(), fd.Name(), other.Name())
			}
		}
		if fd.Message() == parent {
			t.Errorf("%s is inline and of its own type: decoding would never end", fd.FullName())
		}
	})
	if inlineCount < 20 {
		t.Errorf("found %d inline fields, want the event payloads that are resource objects (at least 20)", inlineCount)
	}
}

// eventHelpers are messages of events.proto that are parts of an event, not events.
var eventHelpers = []string{"ReadyApplication", "RateLimitedMeta", "InviteTargetApplication", "ChannelInfoChannel"}

func TestEventEnvelopeHasEveryEvent(t *testing.T) {
	t.Parallel()
	envelope := (&discordv1.Event{}).ProtoReflect().Descriptor()
	oneof := envelope.Oneofs().ByName("payload")
	if oneof == nil {
		t.Fatal("Event has no payload oneof")
	}
	cases := map[protoreflect.FullName]protoreflect.FieldDescriptor{}
	for i := range oneof.Fields().Len() {
		fd := oneof.Fields().Get(i)
		if fd.Kind() != protoreflect.MessageKind {
			t.Errorf("payload case %s is %s, want an event message", fd.Name(), fd.Kind())
			continue
		}
		if want := snake(string(fd.Message().Name())); string(fd.Name()) != want {
			t.Errorf("payload case %s holds %s; want it named %s (the event name in snake case)",
				fd.Name(), fd.Message().Name(), want)
		}
		if fd.Number() < 100 {
			t.Errorf("payload case %s has number %d; payload cases start at 100", fd.Name(), fd.Number())
		}
		cases[fd.Message().FullName()] = fd
	}
	events := discordv1.File_kubecord_discord_v1_events_proto.Messages()
	for i := range events.Len() {
		md := events.Get(i)
		if slices.Contains(eventHelpers, string(md.Name())) {
			if _, ok := cases[md.FullName()]; ok {
				t.Errorf("%s is listed as a helper but is a payload case", md.Name())
			}
			continue
		}
		if _, ok := cases[md.FullName()]; !ok {
			t.Errorf("event message %s has no case in Event.payload", md.Name())
		}
	}
	// The intents the issue names, plus the events sent regardless of intents.
	for _, name := range []string{
		"READY", "RESUMED", "INTERACTION_CREATE", "GUILD_MEMBERS_CHUNK", "USER_UPDATE", "VOICE_SERVER_UPDATE",
		"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE", "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE",
		"CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "CHANNEL_PINS_UPDATE",
		"THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE", "THREAD_LIST_SYNC", "THREAD_MEMBER_UPDATE", "THREAD_MEMBERS_UPDATE",
		"STAGE_INSTANCE_CREATE", "STAGE_INSTANCE_UPDATE", "STAGE_INSTANCE_DELETE",
		"VOICE_CHANNEL_STATUS_UPDATE", "VOICE_CHANNEL_START_TIME_UPDATE",
		"GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE",
		"GUILD_BAN_ADD", "GUILD_BAN_REMOVE", "GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE",
		"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK",
		"MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE", "MESSAGE_REACTION_REMOVE_ALL", "MESSAGE_REACTION_REMOVE_EMOJI",
		"TYPING_START", "VOICE_STATE_UPDATE", "VOICE_CHANNEL_EFFECT_SEND", "PRESENCE_UPDATE",
	} {
		if oneof.Fields().ByName(protoreflect.Name(strings.ToLower(name))) == nil {
			t.Errorf("Event.payload has no case for %s", name)
		}
	}
}

// snake turns a PascalCase message name into its snake_case event name.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestStateReadsAreSideEffectFreeAndConsistent(t *testing.T) {
	t.Parallel()
	svc := statev1.File_kubecord_state_v1_state_proto.Services().ByName("StateService")
	if svc == nil {
		t.Fatal("StateService not found")
	}
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		opts, ok := m.Options().(*descriptorpb.MethodOptions)
		if !ok || opts.GetIdempotencyLevel() != descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
			t.Errorf("StateService.%s lacks option idempotency_level = NO_SIDE_EFFECTS", m.Name())
		}
		if m.Name() == "GetStats" {
			continue
		}
		c := m.Input().Fields().ByName("consistency")
		if c == nil || c.Message() == nil || c.Message().FullName() != "kubecord.state.v1.Consistency" {
			t.Errorf("StateService.%s: request %s has no `Consistency consistency` field", m.Name(), m.Input().Name())
		}
	}
}

// TestServicesAndRPCsAreDocumented reads the service files: every service and rpc must be preceded
// by a comment (who calls it and what it guarantees). Source comments are not in the generated
// descriptors, hence the text scan.
func TestServicesAndRPCsAreDocumented(t *testing.T) {
	t.Parallel()
	decl := regexp.MustCompile(`^\s*(service|rpc)\s+(\w+)`)
	files, err := filepath.Glob(filepath.Join("kubecord", "*", "v1", "*.proto"))
	if err != nil || len(files) == 0 {
		t.Fatalf("listing proto files: %v (found %d)", err, len(files))
	}
	services := 0
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatalf("opening %s: %v", path, err)
		}
		sc := bufio.NewScanner(f)
		var prev string
		line := 0
		for sc.Scan() {
			line++
			text := sc.Text()
			if m := decl.FindStringSubmatch(text); m != nil {
				if m[1] == "service" {
					services++
				}
				if !strings.HasPrefix(strings.TrimSpace(prev), "//") {
					t.Errorf("%s:%d: %s %s has no comment saying who calls it and what it guarantees", path, line, m[1], m[2])
				}
			}
			prev = text
		}
		if err := sc.Err(); err != nil {
			t.Errorf("reading %s: %v", path, err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("closing %s: %v", path, err)
		}
	}
	if services != 3 {
		t.Errorf("found %d services, want 3 (gateway, state, rest)", services)
	}
}
