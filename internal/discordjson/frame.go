package discordjson

import (
	"fmt"
)

// Frame is a gateway payload with its "d" left undecoded.
type Frame struct {
	// Op is the gateway opcode ("op").
	Op int
	// Seq is the sequence number ("s"); 0 when absent or null.
	Seq uint64
	// Type is the dispatch event name ("t"); empty when absent or null.
	Type string
	// D is the raw JSON of "d", aliasing the frame; nil when absent. A JSON null is kept as
	// the four bytes "null" so the caller can tell it from absence.
	D []byte
}

// ParseFrame reads op, s and t from a gateway payload and slices d without decoding it. The
// whole frame is checked to be well-formed JSON, so D can be stored and decoded later. Frame.D
// aliases frame.
func ParseFrame(frame []byte) (Frame, error) {
	var f Frame
	s := scanner{data: frame}
	if err := parseFrame(&s, &f); err != nil {
		return Frame{}, fmt.Errorf("parsing gateway frame: %w", err)
	}
	return f, nil
}

func parseFrame(s *scanner, f *Frame) error {
	c, err := s.next()
	if err != nil {
		return err
	}
	if c != '{' {
		return s.errorf("gateway payload is not a JSON object")
	}
	empty, err := s.openObject()
	if err != nil {
		return err
	}
	seenOp := false
	for !empty {
		key, err := s.readKey()
		if err != nil {
			return err
		}
		// Compare before the next read: key may alias the scanner's buffer.
		var which byte
		switch string(key) {
		case "op":
			which = 'o'
		case "s", "t", "d":
			which = key[0]
		}
		c, err := s.next()
		if err != nil {
			return err
		}
		switch which {
		case 'o':
			n, isInt, err := s.readNumber()
			if err != nil {
				return err
			}
			v, ok := parseUint(n)
			if !isInt || !ok || v > 1<<31-1 {
				return fmt.Errorf(`"op" %q is not a valid opcode`, n)
			}
			f.Op = int(v)
			seenOp = true
		case 's':
			if c == 'n' {
				if err := s.literal("null"); err != nil {
					return err
				}
				break
			}
			n, isInt, err := s.readNumber()
			if err != nil {
				return err
			}
			v, ok := parseUint(n)
			if !isInt || !ok {
				return fmt.Errorf(`"s" %q is not a valid sequence number`, n)
			}
			f.Seq = v
		case 't':
			if c == 'n' {
				if err := s.literal("null"); err != nil {
					return err
				}
				break
			}
			if c != '"' {
				return s.errorf(`"t" must be a string or null`)
			}
			name, err := s.readString()
			if err != nil {
				return err
			}
			f.Type = internName(name)
		case 'd':
			start := s.pos
			// Depth 0: the limit applies to d as it does when d is decoded on its own.
			if err := s.skipValue(0); err != nil {
				return err
			}
			f.D = s.data[start:s.pos:s.pos]
		default:
			if err := s.skipValue(1); err != nil {
				return err
			}
		}
		closed, err := s.endOfContainer('}')
		if err != nil {
			return err
		}
		empty = closed
	}
	s.ws()
	if s.pos != len(s.data) {
		return s.errorf("unexpected data after the gateway payload")
	}
	if !seenOp {
		return fmt.Errorf(`gateway payload has no "op"`)
	}
	return nil
}

// knownNames interns event names so a frame's Type costs no allocation for the events Discord
// sends every second. It is filled once at init with the typed events and is read-only after.
var knownNames = map[string]string{}

// internName returns name as a string, shared for known event names.
func internName(name []byte) string {
	if v, ok := knownNames[string(name)]; ok {
		return v
	}
	return string(name)
}
