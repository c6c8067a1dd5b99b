package discordsim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// ApplicationCommand is a registered slash, user or message command.
type ApplicationCommand struct {
	ID                       Snowflake       `json:"id"`
	Type                     int             `json:"type"`
	ApplicationID            Snowflake       `json:"application_id"`
	GuildID                  *Snowflake      `json:"guild_id,omitempty"`
	Name                     string          `json:"name"`
	NameLocalizations        json.RawMessage `json:"name_localizations,omitempty"`
	Description              string          `json:"description"`
	DescriptionLocalizations json.RawMessage `json:"description_localizations,omitempty"`
	Options                  json.RawMessage `json:"options,omitempty"`
	DefaultMemberPermissions *string         `json:"default_member_permissions"`
	DMPermission             *bool           `json:"dm_permission,omitempty"`
	NSFW                     bool            `json:"nsfw"`
	Contexts                 json.RawMessage `json:"contexts,omitempty"`
	IntegrationTypes         json.RawMessage `json:"integration_types,omitempty"`
	Version                  Snowflake       `json:"version"`
}

// Command limits Discord documents.
const (
	maxGlobalCommands   = 100 // per type for chat input; simplified to all types
	commandChatInput    = 1
	maxCommandDescRunes = 100
)

// commandNameRE is the documented pattern for chat input command names.
var commandNameRE = regexp.MustCompile(`^[-_'\p{L}\p{N}\p{M}]{1,32}$`)

// commandKey is one command list: an application's global commands (guild 0)
// or its commands in one guild.
type commandKey struct {
	app, guild Snowflake
}

// commandStore holds registered application commands.
type commandStore struct {
	mu    sync.Mutex
	lists map[commandKey][]ApplicationCommand
}

// validateCommand checks a command body and fills defaults, returning the
// form errors (prefixed by path, e.g. "0" for bulk bodies).
func validateCommand(cmd *ApplicationCommand, errs formErrors, path ...string) {
	if cmd.Type == 0 {
		cmd.Type = commandChatInput
	}
	at := func(field string) []string { return append(slices.Clone(path), field) }
	switch {
	case cmd.Name == "":
		errs.add("BASE_TYPE_REQUIRED", "This field is required", at("name")...)
	case cmd.Type == commandChatInput && (!commandNameRE.MatchString(cmd.Name) || strings.ToLower(cmd.Name) != cmd.Name):
		errs.add("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid", at("name")...)
	case utf8.RuneCountInString(cmd.Name) > 32:
		errs.add("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.", at("name")...)
	}
	if cmd.Type == commandChatInput {
		if n := utf8.RuneCountInString(cmd.Description); n < 1 || n > maxCommandDescRunes {
			errs.add("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.", at("description")...)
		}
	}
	if cmd.Type < 1 || cmd.Type > 4 {
		errs.add("BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.", at("type")...)
	}
}

// commandScope returns the list key of the request: the application (which
// must be the bot itself) and the guild, if any. It answers on error.
func (c *reqCtx) commandScope() (commandKey, bool) {
	app := c.id("application.id")
	if app != c.bot.ID {
		c.fail(http.StatusForbidden, 50001, "Missing Access")
		return commandKey{}, false
	}
	k := commandKey{app: app}
	if c.str("guild.id") != "" {
		if !c.guild(false, func(*World, *Guild) {}) {
			return commandKey{}, false
		}
		k.guild = c.id("guild.id")
	}
	return k, true
}

// GET /applications/{application.id}[/guilds/{guild.id}]/commands
func handleListCommands(c *reqCtx) {
	k, ok := c.commandScope()
	if !ok {
		return
	}
	cs := &c.rs.commands
	cs.mu.Lock()
	out := slices.Clone(cs.lists[k])
	cs.mu.Unlock()
	if out == nil {
		out = []ApplicationCommand{}
	}
	c.json(http.StatusOK, out)
}

// GET /applications/{application.id}[/guilds/{guild.id}]/commands/{command.id}
func handleGetCommand(c *reqCtx) {
	k, ok := c.commandScope()
	if !ok {
		return
	}
	id := c.id("command.id")
	cs := &c.rs.commands
	cs.mu.Lock()
	i := slices.IndexFunc(cs.lists[k], func(x ApplicationCommand) bool { return x.ID == id })
	var cmd ApplicationCommand
	if i >= 0 {
		cmd = cs.lists[k][i]
	}
	cs.mu.Unlock()
	if i < 0 {
		c.fail(http.StatusNotFound, 10063, "Unknown application command")
		return
	}
	c.json(http.StatusOK, cmd)
}

// stamp gives cmd its identity in list k: the id of the command of the same
// name and type if there is one (Discord upserts by name), else a new one.
func (c *reqCtx) stamp(cmd *ApplicationCommand, k commandKey, existing []ApplicationCommand) {
	cmd.ApplicationID = k.app
	if k.guild != 0 {
		g := k.guild
		cmd.GuildID = &g
	}
	cmd.ID = 0
	for _, e := range existing {
		if e.Name == cmd.Name && e.Type == cmd.Type {
			cmd.ID = e.ID
		}
	}
	if cmd.ID == 0 {
		cmd.ID = c.rs.s.newID()
	}
	cmd.Version = c.rs.s.newID()
}

// POST /applications/{application.id}[/guilds/{guild.id}]/commands
func handleCreateCommand(c *reqCtx) {
	k, ok := c.commandScope()
	if !ok {
		return
	}
	var cmd ApplicationCommand
	if !c.decodeJSONBody(&cmd) {
		return
	}
	errs := formErrors{}
	validateCommand(&cmd, errs)
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	cs := &c.rs.commands
	cs.mu.Lock()
	list := cs.lists[k]
	c.stamp(&cmd, k, list)
	created := true
	if i := slices.IndexFunc(list, func(x ApplicationCommand) bool { return x.ID == cmd.ID }); i >= 0 {
		list[i] = cmd
		created = false
	} else if len(list) >= maxGlobalCommands {
		cs.mu.Unlock()
		c.fail(http.StatusBadRequest, 30032, "Maximum number of application commands reached (100)")
		return
	} else {
		list = append(list, cmd)
	}
	if cs.lists == nil {
		cs.lists = map[commandKey][]ApplicationCommand{}
	}
	cs.lists[k] = list
	cs.mu.Unlock()
	// 201 for a new command, 200 when an existing one was overwritten.
	if created {
		c.json(http.StatusCreated, cmd)
		return
	}
	c.json(http.StatusOK, cmd)
}

// PUT /applications/{application.id}[/guilds/{guild.id}]/commands (bulk overwrite)
func handleBulkOverwriteCommands(c *reqCtx) {
	k, ok := c.commandScope()
	if !ok {
		return
	}
	var cmds []ApplicationCommand
	if !c.decodeJSONBody(&cmds) {
		return
	}
	errs := formErrors{}
	if len(cmds) > maxGlobalCommands {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
	}
	seen := map[string]bool{}
	for i := range cmds {
		validateCommand(&cmds[i], errs, strconv.Itoa(i))
		key := strconv.Itoa(cmds[i].Type) + "/" + cmds[i].Name
		if seen[key] {
			errs.add("APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique", strconv.Itoa(i), "name")
		}
		seen[key] = true
	}
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	cs := &c.rs.commands
	cs.mu.Lock()
	old := cs.lists[k]
	for i := range cmds {
		c.stamp(&cmds[i], k, old)
	}
	if cs.lists == nil {
		cs.lists = map[commandKey][]ApplicationCommand{}
	}
	cs.lists[k] = slices.Clone(cmds)
	cs.mu.Unlock()
	if cmds == nil {
		cmds = []ApplicationCommand{}
	}
	c.json(http.StatusOK, cmds)
}

// PATCH /applications/{application.id}[/guilds/{guild.id}]/commands/{command.id}
func handleEditCommand(c *reqCtx) {
	k, ok := c.commandScope()
	if !ok {
		return
	}
	id := c.id("command.id")
	cs := &c.rs.commands
	cs.mu.Lock()
	i := slices.IndexFunc(cs.lists[k], func(x ApplicationCommand) bool { return x.ID == id })
	var cmd ApplicationCommand
	if i >= 0 {
		cmd = cs.lists[k][i]
	}
	cs.mu.Unlock()
	if i < 0 {
		c.fail(http.StatusNotFound, 10063, "Unknown application command")
		return
	}
	// Decode over the current command: absent fields keep their values.
	if !c.decodeJSONBody(&cmd) {
		return
	}
	errs := formErrors{}
	validateCommand(&cmd, errs)
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	cmd.ID, cmd.ApplicationID, cmd.Version = id, k.app, c.rs.s.newID()
	cs.mu.Lock()
	if j := slices.IndexFunc(cs.lists[k], func(x ApplicationCommand) bool { return x.ID == id }); j >= 0 {
		cs.lists[k][j] = cmd
	}
	cs.mu.Unlock()
	c.json(http.StatusOK, cmd)
}

// DELETE /applications/{application.id}[/guilds/{guild.id}]/commands/{command.id}
func handleDeleteCommand(c *reqCtx) {
	k, ok := c.commandScope()
	if !ok {
		return
	}
	id := c.id("command.id")
	cs := &c.rs.commands
	cs.mu.Lock()
	before := len(cs.lists[k])
	cs.lists[k] = slices.DeleteFunc(cs.lists[k], func(x ApplicationCommand) bool { return x.ID == id })
	removed := len(cs.lists[k]) < before
	cs.mu.Unlock()
	if !removed {
		c.fail(http.StatusNotFound, 10063, "Unknown application command")
		return
	}
	c.noContent()
}

// GET /users/@me/guilds
func handleMyGuilds(c *reqCtx) {
	q := c.r.URL.Query()
	limit := 200
	errs := formErrors{}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			errs.add("NUMBER_TYPE_MAX", "int value should be between 1 and 200.", "limit")
		}
		limit = n
	}
	var before, after Snowflake
	for _, p := range []struct {
		name string
		dst  *Snowflake
	}{{"before", &before}, {"after", &after}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				errs.add("NUMBER_TYPE_COERCE", "Value \""+truncate(v, 32)+"\" is not snowflake.", p.name)
			}
			*p.dst = Snowflake(n)
		}
	}
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	type partialGuild struct {
		ID          Snowflake `json:"id"`
		Name        string    `json:"name"`
		Icon        *string   `json:"icon"`
		Owner       bool      `json:"owner"`
		Permissions string    `json:"permissions"`
		Features    []string  `json:"features"`
	}
	w := c.rs.s.world
	w.mu.RLock()
	out := make([]partialGuild, 0, min(limit, len(w.guilds)))
	ids := make([]Snowflake, 0, len(w.guilds))
	for id, g := range w.guilds {
		if _, member := g.Members[c.bot.ID]; member {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if before != 0 {
		// Pages before an id end at it and keep the newest "limit" guilds.
		i, _ := slices.BinarySearch(ids, before)
		ids = ids[max(0, i-limit):i]
	}
	for _, id := range ids {
		if id <= after || len(out) == limit {
			continue
		}
		g := w.guilds[id]
		perms := "0"
		if r, ok := g.Roles[g.ID]; ok {
			perms = r.Permissions
		}
		f := slices.Clone(g.Features)
		if f == nil {
			f = []string{}
		}
		out = append(out, partialGuild{ID: id, Name: g.Name, Icon: g.Icon, Owner: g.OwnerID == c.bot.ID, Permissions: perms, Features: f})
	}
	w.mu.RUnlock()
	c.json(http.StatusOK, out)
}

// GET /guilds/{guild.id}/members/search?query=&limit=
func handleSearchMembers(c *reqCtx) {
	q := c.r.URL.Query()
	query := strings.ToLower(q.Get("query"))
	errs := formErrors{}
	if _, ok := q["query"]; !ok {
		errs.add("BASE_TYPE_REQUIRED", "This field is required", "query")
	}
	limit := 1
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			errs.add("NUMBER_TYPE_MAX", "int value should be between 1 and 1000.", "limit")
		}
		limit = n
	}
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	out := []Member{}
	if !c.guild(false, func(w *World, g *Guild) {
		// A full scan, as the simulator keeps no name index; guilds are
		// small enough in tests, and the scan stops at limit.
		w.forEachMemberLocked(g, 0, func(m Member) bool {
			if m.User == nil {
				return true
			}
			name := strings.ToLower(m.User.Username)
			nick := ""
			if m.Nick != nil {
				nick = strings.ToLower(*m.Nick)
			}
			if strings.HasPrefix(name, query) || (nick != "" && strings.HasPrefix(nick, query)) {
				out = append(out, m)
			}
			return len(out) < limit
		})
	}) {
		return
	}
	c.json(http.StatusOK, out)
}

// GET /guilds/{guild.id}/emojis
func handleListEmojis(c *reqCtx) {
	var out []Emoji
	if !c.guild(false, func(_ *World, g *Guild) {
		out = make([]Emoji, 0, len(g.Emojis))
		for _, e := range g.Emojis {
			cp := *e
			cp.Roles = slices.Clone(e.Roles)
			out = append(out, cp)
		}
	}) {
		return
	}
	slices.SortFunc(out, func(a, b Emoji) int { return cmpSnowflake(a.ID, b.ID) })
	c.json(http.StatusOK, out)
}

// GET /guilds/{guild.id}/emojis/{emoji.id}
func handleGetEmoji(c *reqCtx) {
	id, err := strconv.ParseUint(c.str("emoji.id"), 10, 64)
	var out Emoji
	found := false
	if !c.guild(false, func(_ *World, g *Guild) {
		if e, ok := g.Emojis[Snowflake(id)]; ok && err == nil {
			out, found = *e, true
			out.Roles = slices.Clone(e.Roles)
		}
	}) {
		return
	}
	if !found {
		c.fail(http.StatusNotFound, 10014, "Unknown Emoji")
		return
	}
	c.json(http.StatusOK, out)
}
