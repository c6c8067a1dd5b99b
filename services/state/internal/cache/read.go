package cache

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

// decodeMember turns a stored member back into a Member with its user (only the id when the
// user is not cached).
func decodeMember(mb MemberBlob) (*discordv1.Member, error) {
	m := &discordv1.Member{}
	if err := proto.Unmarshal(mb.Member, m); err != nil {
		return nil, fmt.Errorf("decoding cached member %d: %w", mb.UserID, err)
	}
	m.User = &discordv1.User{Id: mb.UserID}
	if mb.User != nil {
		if err := proto.Unmarshal(mb.User, m.User); err != nil {
			return nil, fmt.Errorf("decoding cached user %d: %w", mb.UserID, err)
		}
	}
	return m, nil
}

// DecodeMember turns a stored member back into a Member with its user.
func DecodeMember(mb MemberBlob) (*discordv1.Member, error) { return decodeMember(mb) }

// Decode unmarshals a stored blob into msg.
func Decode(blob []byte, msg proto.Message, what string) error {
	if err := proto.Unmarshal(blob, msg); err != nil {
		return fmt.Errorf("decoding cached %s: %w", what, err)
	}
	return nil
}
