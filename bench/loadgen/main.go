// Command loadgen drives authlink's AdminAuthService (or a reference server
// serving the same service) with "pairs": GenerateLink MAGICLINK for a fresh
// address, then VerifyLink of the token in the returned action_link. It speaks
// gRPC (grpc-go, the two messages encoded by hand with protowire) or the
// Connect protocol's JSON (plain net/http POSTs), and prints one JSON line.
//
// Modes:
//
//	closed  c workers, each one pair after another (pairs/s, p50/p99 per pair)
//	paced   pairs started at a fixed rate whatever the server does; latency is
//	        measured from the scheduled start, so queueing counts
//	fill    GenerateLink only, n links for n fresh addresses (pre-fill)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	service       = "/authlink.v1.AdminAuthService/"
	linkMagiclink = 2 // authlink.v1.LinkType.LINK_TYPE_MAGICLINK
)

type options struct {
	addr, protocol, key, mode, prefix string
	concurrency, conns, n             int
	rate                              float64
	warmup, duration                  time.Duration
	expiresIn                         int
	serverPid                         int
	maxDuration                       time.Duration
}

// client makes one call of each kind; implementations are safe for concurrent use.
type client interface {
	generate(ctx context.Context, email string, worker int) (token string, err error)
	verify(ctx context.Context, token string, worker int) error
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "server host:port")
	flag.StringVar(&o.protocol, "protocol", "grpc", "grpc or connect (Connect protocol, JSON, HTTP/1.1)")
	flag.StringVar(&o.key, "key", "", "service key (authorization: Bearer)")
	flag.StringVar(&o.mode, "mode", "closed", "closed, paced or fill")
	flag.StringVar(&o.prefix, "prefix", "", "email local-part prefix (unique per run)")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent pairs (closed, fill)")
	flag.IntVar(&o.conns, "conns", 4, "HTTP/2 connections for gRPC")
	flag.IntVar(&o.n, "n", 1000, "links to generate (fill)")
	flag.Float64Var(&o.rate, "rate", 100, "pairs per second (paced)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded time before measuring")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time")
	flag.IntVar(&o.expiresIn, "expires-in", 0, "expires_in seconds on GenerateLink (0: the server's default)")
	flag.IntVar(&o.serverPid, "server-pid", 0, "report this process's CPU time over the measured window")
	flag.DurationVar(&o.maxDuration, "max-duration", 0, "fill: stop after this long even if fewer than n links are made (0: no limit)")
	flag.Parse()
	if o.prefix == "" {
		o.prefix = "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}

	var c client
	var err error
	switch o.protocol {
	case "grpc":
		c, err = newGrpcClient(o)
	case "connect":
		c = newConnectClient(o)
	default:
		err = fmt.Errorf("unknown protocol %q", o.protocol)
	}
	if err != nil {
		fail(err)
	}
	var r result
	switch o.mode {
	case "closed":
		r = closedLoop(c, o)
	case "paced":
		r = paced(c, o)
	case "fill":
		r = fill(c, o)
	default:
		fail(fmt.Errorf("unknown mode %q", o.mode))
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

type result struct {
	Pairs       int     `json:"pairs"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"firstError,omitempty"`
	Seconds     float64 `json:"seconds"`
	PairsPerSec float64 `json:"pairsPerSec"`
	P50Ms       float64 `json:"p50Ms"`
	P99Ms       float64 `json:"p99Ms"`
	// CPU time of this generator over the measured window, and of -server-pid.
	LoadgenCPUMs float64 `json:"loadgenCpuMs"`
	ServerCPUMs  float64 `json:"serverCpuMs"`
	// Paced: pairs not started because too many were already in flight.
	Dropped int `json:"dropped,omitempty"`
}

// recorder collects per-pair latencies and errors of the measured window.
type recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    int
	first     string
}

func (r *recorder) ok(d time.Duration) {
	r.mu.Lock()
	r.latencies = append(r.latencies, d)
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	r.errors++
	if r.first == "" {
		r.first = err.Error()
	}
	r.mu.Unlock()
}

// window measures CPU of this process and of the server between start and stop.
type window struct {
	started            time.Time
	selfCPU, serverCPU time.Duration
	serverPid          int
}

func startWindow(serverPid int) *window {
	return &window{started: time.Now(), selfCPU: selfCPU(), serverCPU: processCPU(serverPid), serverPid: serverPid}
}

func (w *window) finish(rec *recorder, extra int) result {
	elapsed := time.Since(w.started)
	self := selfCPU() - w.selfCPU
	server := processCPU(w.serverPid) - w.serverCPU
	rec.mu.Lock()
	defer rec.mu.Unlock()
	sort.Slice(rec.latencies, func(i, j int) bool { return rec.latencies[i] < rec.latencies[j] })
	return result{
		Pairs:        len(rec.latencies),
		Errors:       rec.errors,
		FirstError:   rec.first,
		Seconds:      elapsed.Seconds(),
		PairsPerSec:  float64(len(rec.latencies)) / elapsed.Seconds(),
		P50Ms:        quantileMs(rec.latencies, 0.50),
		P99Ms:        quantileMs(rec.latencies, 0.99),
		LoadgenCPUMs: ms(self),
		ServerCPUMs:  ms(server),
		Dropped:      extra,
	}
}

func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)))
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return ms(sorted[i])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is utime+stime of a process from /proc/<pid>/stat.
func processCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are 14 and 15.
	text := string(data)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

var sequence atomic.Int64

func (o options) nextEmail() string {
	return fmt.Sprintf("%s-%d@bench.example.com", o.prefix, sequence.Add(1))
}

func pair(ctx context.Context, c client, o options, worker int) error {
	token, err := c.generate(ctx, o.nextEmail(), worker)
	if err != nil {
		return fmt.Errorf("GenerateLink: %w", err)
	}
	if err := c.verify(ctx, token, worker); err != nil {
		return fmt.Errorf("VerifyLink: %w", err)
	}
	return nil
}

func closedLoop(c client, o options) result {
	ctx := context.Background()
	rec := &recorder{}
	var measuring atomic.Bool
	var win *window
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				started := time.Now()
				err := pair(ctx, c, o, worker)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					rec.fail(err)
				} else {
					rec.ok(time.Since(started))
				}
			}
		}(w)
	}
	time.Sleep(o.warmup)
	win = startWindow(o.serverPid)
	measuring.Store(true)
	time.Sleep(o.duration)
	measuring.Store(false)
	r := win.finish(rec, 0)
	close(stop)
	wg.Wait()
	return r
}

func paced(c client, o options) result {
	ctx := context.Background()
	const maxInFlight = 4096
	interval := time.Duration(float64(time.Second) / o.rate)
	rec := &recorder{}
	var inFlight atomic.Int64
	var dropped int
	var wg sync.WaitGroup
	var win *window
	start := time.Now()
	measureFrom := start.Add(o.warmup)
	end := measureFrom.Add(o.duration)
	for i := 0; ; {
		now := time.Now()
		if win == nil && !now.Before(measureFrom) {
			win = startWindow(o.serverPid)
		}
		// Everything due is started, also when this loop itself was late;
		// the last pass starts every pair scheduled before the end.
		last := !now.Before(end)
		for ; ; i++ {
			scheduled := start.Add(time.Duration(i) * interval)
			if scheduled.After(now) || !scheduled.Before(end) {
				break
			}
			recorded := !scheduled.Before(measureFrom)
			if inFlight.Load() >= maxInFlight {
				if recorded {
					dropped++
				}
				continue
			}
			inFlight.Add(1)
			wg.Add(1)
			go func(scheduled time.Time, worker int, recorded bool) {
				defer wg.Done()
				defer inFlight.Add(-1)
				err := pair(ctx, c, o, worker)
				if !recorded {
					return
				}
				if err != nil {
					rec.fail(err)
				} else {
					rec.ok(time.Since(scheduled))
				}
			}(scheduled, i, recorded)
		}
		if last {
			break
		}
		time.Sleep(500 * time.Microsecond)
	}
	wg.Wait() // the pairs scheduled in the window count, however late they end
	r := win.finish(rec, dropped)
	r.Seconds = o.duration.Seconds()
	r.PairsPerSec = float64(r.Pairs) / r.Seconds
	return r
}

func fill(c client, o options) result {
	ctx := context.Background()
	rec := &recorder{}
	win := startWindow(o.serverPid)
	deadline := time.Now().Add(o.maxDuration)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			for next.Add(1) <= int64(o.n) {
				started := time.Now()
				if o.maxDuration > 0 && started.After(deadline) {
					return
				}
				if _, err := c.generate(ctx, o.nextEmail(), worker); err != nil {
					rec.fail(err)
				} else {
					rec.ok(time.Since(started))
				}
			}
		}(w)
	}
	wg.Wait()
	return win.finish(rec, 0)
}

// tokenOf reads the token from an action_link: …/verify#token=…&type=….
func tokenOf(actionLink string) (string, error) {
	i := strings.Index(actionLink, "token=")
	if i < 0 {
		return "", fmt.Errorf("no token in action_link %q", actionLink)
	}
	token := actionLink[i+len("token="):]
	if j := strings.IndexByte(token, '&'); j >= 0 {
		token = token[:j]
	}
	return token, nil
}

// ---- gRPC: grpc-go with a pass-through codec; messages encoded with protowire.

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

type grpcClient struct {
	conns     []*grpc.ClientConn
	auth      metadata.MD
	expiresIn int
}

func newGrpcClient(o options) (*grpcClient, error) {
	g := &grpcClient{auth: metadata.Pairs("authorization", "Bearer "+o.key), expiresIn: o.expiresIn}
	for i := 0; i < max(1, o.conns); i++ {
		conn, err := grpc.NewClient("passthrough:///"+o.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
		)
		if err != nil {
			return nil, err
		}
		conn.Connect()
		g.conns = append(g.conns, conn)
	}
	return g, nil
}

func (g *grpcClient) generate(ctx context.Context, email string, worker int) (string, error) {
	req := protowire.AppendTag(nil, 1, protowire.VarintType)
	req = protowire.AppendVarint(req, linkMagiclink)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, email)
	if g.expiresIn > 0 {
		duration := protowire.AppendTag(nil, 1, protowire.VarintType)
		duration = protowire.AppendVarint(duration, uint64(g.expiresIn))
		req = protowire.AppendTag(req, 7, protowire.BytesType)
		req = protowire.AppendBytes(req, duration)
	}
	var res []byte
	ctx = metadata.NewOutgoingContext(ctx, g.auth)
	if err := g.conns[worker%len(g.conns)].Invoke(ctx, service+"GenerateLink", &req, &res); err != nil {
		return "", err
	}
	actionLink, err := stringField(res, 1)
	if err != nil {
		return "", err
	}
	return tokenOf(actionLink)
}

func (g *grpcClient) verify(ctx context.Context, token string, worker int) error {
	req := protowire.AppendTag(nil, 1, protowire.VarintType)
	req = protowire.AppendVarint(req, linkMagiclink)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, token)
	var res []byte
	return g.conns[worker%len(g.conns)].Invoke(ctx, service+"VerifyLink", &req, &res)
}

// stringField finds a top-level string field of a serialized message.
func stringField(message []byte, field protowire.Number) (string, error) {
	for len(message) > 0 {
		number, kind, n := protowire.ConsumeTag(message)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		message = message[n:]
		if number == field && kind == protowire.BytesType {
			value, m := protowire.ConsumeString(message)
			if m < 0 {
				return "", protowire.ParseError(m)
			}
			return value, nil
		}
		m := protowire.ConsumeFieldValue(number, kind, message)
		if m < 0 {
			return "", protowire.ParseError(m)
		}
		message = message[m:]
	}
	return "", fmt.Errorf("field %d missing", field)
}

// ---- Connect protocol, JSON, over HTTP/1.1.

type connectClient struct {
	http      *http.Client
	base, key string
	expiresIn int
}

func newConnectClient(o options) *connectClient {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        o.concurrency * 2,
		MaxIdleConnsPerHost: o.concurrency * 2,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &connectClient{http: &http.Client{Transport: transport, Timeout: 30 * time.Second},
		base: "http://" + o.addr + service, key: o.key, expiresIn: o.expiresIn}
}

func (c *connectClient) call(ctx context.Context, method string, body []byte, auth bool, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+method, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return errors.New(res.Status + ": " + strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

func (c *connectClient) generate(ctx context.Context, email string, _ int) (string, error) {
	body := `{"type":"LINK_TYPE_MAGICLINK","email":` + strconv.Quote(email)
	if c.expiresIn > 0 {
		body += `,"expiresIn":"` + strconv.Itoa(c.expiresIn) + `s"`
	}
	body += "}"
	var res struct {
		ActionLink string `json:"actionLink"`
	}
	if err := c.call(ctx, "GenerateLink", []byte(body), true, &res); err != nil {
		return "", err
	}
	return tokenOf(res.ActionLink)
}

func (c *connectClient) verify(ctx context.Context, token string, _ int) error {
	body := `{"type":"LINK_TYPE_MAGICLINK","token":` + strconv.Quote(token) + "}"
	return c.call(ctx, "VerifyLink", []byte(body), false, nil)
}
