package main

import (
	"testing"

	"github.com/kubecord/kubecord/discordsim"
)

func TestParseMix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    discordsim.EventMix
		wantErr bool
	}{
		{in: "", want: discordsim.EventMix{}},
		{in: "messages=10,typing=5", want: discordsim.EventMix{Messages: 10, Typing: 5}},
		{in: " voice=1.5 , members=0", want: discordsim.EventMix{Voice: 1.5}},
		{in: "messages", wantErr: true},
		{in: "emails=3", wantErr: true},
		{in: "messages=-1", wantErr: true},
		{in: "messages=lots", wantErr: true},
	} {
		got, err := parseMix(tc.in)
		if (err != nil) != tc.wantErr {
			t.Fatalf("parseMix(%q) error %v, want error %v", tc.in, err, tc.wantErr)
		}
		if err == nil && got != tc.want {
			t.Fatalf("parseMix(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRunSimRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-guilds", "-3"},
		{"-mix", "bogus=1"},
		{"-skew", "0.5", "-rate", "10"},
		{"-nope"},
	} {
		if err := runSim(t.Context(), args); err == nil {
			t.Fatalf("runSim(%v) succeeded, want an error", args)
		}
	}
}
