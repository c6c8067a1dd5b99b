// Package discordsim is a simulator of Discord's gateway and REST API, faithful
// enough that a bot that works against it works against Discord.
//
// Start one in a test, point a bot (or Kubecord) at its URLs, and read its
// accounting to prove what was sent, what arrived and that no limit was broken.
package discordsim

import (
	"log/slog"
	"net/http"
)

// Bot is one bot account the simulator accepts. Each bot has its own token,
// its own gateway sessions and its own REST ratelimits.
type Bot struct {
	ID    Snowflake
	Name  string
	Token string
}

// Config describes the simulated world and its limits. Zero values take
// Discord's real defaults, so tests only set what they need.
type Config struct {
	// Bots are the accepted bot accounts; one is generated when empty.
	Bots []Bot
	// REST holds the REST API's limits and quirks.
	REST RESTConfig
	// Logger receives the simulator's logs; nil discards them.
	Logger *slog.Logger
	// (gateway, world and load settings are added by the gateway part)
}

// Server is a running simulator.
type Server struct {
	cfg   Config
	log   *slog.Logger
	world *World
	rest  *restState
	mux   *http.ServeMux
}
