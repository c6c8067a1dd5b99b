package discordjson

import (
	"errors"
)

// errTimestamp is wrapped with the offending text by the decoder.
var errTimestamp = errors.New("invalid timestamp")

// Range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// parseTimestamp parses the ISO 8601 form Discord sends, "2026-11-22T10:00:00.123000+00:00", also
// with "Z", a lowercase "t"/"z", any other offset, any number of fraction digits (nanoseconds and
// beyond are truncated) or none. It is hand-written because time.Parse with an RFC 3339 layout is
// several times slower and allocates, and GUILD_CREATE carries one timestamp per member.
func parseTimestamp(b []byte) (seconds int64, nanos int32, err error) {
	// YYYY-MM-DDTHH:MM:SS is 19 bytes; an offset adds at least 1.
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') ||
		b[13] != ':' || b[16] != ':' {
		return 0, 0, errTimestamp
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return 0, 0, errTimestamp
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return 0, 0, errTimestamp
	}
	i := 19
	if b[i] == '.' {
		i++
		start := i
		scale := int64(100_000_000)
		var frac int64
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			frac += int64(b[i]-'0') * scale
			scale /= 10
			i++
		}
		if i == start {
			return 0, 0, errTimestamp
		}
		nanos = int32(frac)
	}
	if i >= len(b) {
		return 0, 0, errTimestamp
	}
	var offset int64
	switch b[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		if len(b)-i != 6 || b[i+3] != ':' {
			return 0, 0, errTimestamp
		}
		oh, ok1 := digits(b[i+1 : i+3])
		om, ok2 := digits(b[i+4 : i+6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, 0, errTimestamp
		}
		offset = int64(oh*3600 + om*60)
		if b[i] == '-' {
			offset = -offset
		}
		i += 6
	default:
		return 0, 0, errTimestamp
	}
	if i != len(b) {
		return 0, 0, errTimestamp
	}
	seconds = daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - offset
	if seconds < minTimestampSeconds || seconds > maxTimestampSeconds {
		return 0, 0, errTimestamp
	}
	return seconds, nanos, nil
}

// digits parses a fixed-width run of decimal digits.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days from 1970-01-01 to the given proleptic Gregorian date (Howard
// Hinnant's algorithm, which needs no tables and no loops).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400 // y >= 0 here because years start at 1.
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
