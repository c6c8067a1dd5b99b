package discordsim_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kubecord/kubecord/discordsim"
)

// A test makes the next REST call fail with a 503, then proves from the
// accounting that its client retried and provoked no 429.
func ExampleServer_InjectRESTFault() {
	sim, err := discordsim.New(discordsim.Config{Guilds: 2})
	if err != nil {
		panic(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		panic(err)
	}
	defer sim.Close()

	if err := sim.InjectRESTFault(discordsim.RESTFault{Status: http.StatusServiceUnavailable, Route: "/users/@me"}); err != nil {
		panic(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		req, _ := http.NewRequest("GET", sim.URL()+"/api/v10/users/@me", nil)
		req.Header.Set("Authorization", "Bot "+sim.Bots()[0].Token)
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		_ = resp.Body.Close()
		fmt.Println("attempt", attempt, resp.StatusCode)
		if resp.StatusCode == http.StatusOK {
			break
		}
	}
	st := sim.RESTStats()
	fmt.Println("faults:", st.Faults, "429s:", st.RateLimited)
	// Output:
	// attempt 1 503
	// attempt 2 200
	// faults: 1 429s: 0
}
