package rest

import (
	"flag"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // empty: valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad url", func(c *Config) { c.DiscordURL = "discord.com/api" }, "--discord-url"},
		{"duplicate bot", func(c *Config) { c.Bots = []Bot{{Name: "a", Token: "t1"}, {Name: "a", Token: "t2"}} }, "given twice"},
		{"empty token", func(c *Config) { c.Bots = []Bot{{Name: "a", Token: " "}} }, "empty token"},
		{"unknown default", func(c *Config) { c.Bots = []Bot{{Name: "a", Token: "t"}}; c.DefaultBot = "b" }, "--default-bot"},
		{"invalid limit past Discord's ban", func(c *Config) { c.Limits.InvalidLimit = 20000 }, "--invalid-limit"},
		{"global limit of an unknown bot", func(c *Config) {
			c.Bots = []Bot{{Name: "a", Token: "t1"}}
			c.BotGlobalLimits = map[string]int{"b": 500}
		}, `"b" is not a configured bot`},
		{"zero bot global limit", func(c *Config) {
			c.Bots = []Bot{{Name: "a", Token: "t1"}}
			c.BotGlobalLimits = map[string]int{"a": 0}
		}, "positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate: %v, want an error about %s", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "t1") {
				t.Errorf("error %q shows a token", err)
			}
		})
	}
}

func TestBotFlags(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	fs := flag.NewFlagSet("rest", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--bot", "a=" + tokenA, "--bots", "b=" + tokenB + ", c=ccccccccccc"}); err != nil {
		t.Fatal(err)
	}
	if len(c.Bots) != 3 || c.Bots[0].Name != "a" || c.Bots[1].Token != tokenB || c.Bots[2].Name != "c" {
		t.Fatalf("bots %v, want a, b and c", c.Bots)
	}
	shown := fs.Lookup("bot").Value.String()
	if strings.Contains(shown, tokenA) || !strings.Contains(shown, "a=") {
		t.Errorf("the flag prints as %q: want names without tokens", shown)
	}
	if err := fs.Set("bot", "no-token-here"); err == nil {
		t.Error("--bot without = was accepted")
	}
	if c := (Config{}).withDefaults(); c.MaxRetries != 3 || c.DiscordURL != DefaultDiscordURL || c.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("zero config took %+v, want the defaults", c)
	}
	if c := (Config{MaxRetries: -1}).withDefaults(); c.MaxRetries != 0 {
		t.Errorf("MaxRetries -1 became %d, want 0 (none)", c.MaxRetries)
	}
}

func TestBotGlobalLimitFlag(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	fs := flag.NewFlagSet("rest", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--bots", "a=" + tokenA + ",b=" + tokenB, "--bot-global-limit", "b=1200"}); err != nil {
		t.Fatal(err)
	}
	if err := fs.Set("bot-global-limit", "b"); err == nil {
		t.Error("--bot-global-limit without =N was accepted")
	}
	got := c.withDefaults()
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if got.Bots[0].GlobalLimit != 0 || got.Bots[1].GlobalLimit != 1200 {
		t.Errorf("global limits %d and %d, want 0 (the default) for a and 1200 for b", got.Bots[0].GlobalLimit, got.Bots[1].GlobalLimit)
	}
}
