// Command confd-interop-host is a go-plugin host for confd database plugins.
// It exists so that plugins built with confd's Rust SDK are tested against a
// real HashiCorp go-plugin host (Debian's go-plugin 1.0.1).
//
// Usage: confd-interop-host [flags] PLUGIN [ARGS...]
//
// It starts PLUGIN, then calls Ping, Configure, GetValues, one WatchPrefix
// (reading one stream message), Info, and finally Kill. Each result is one
// JSON object per line on stdout. On any error it prints a JSON line with an
// "error" field, a message on stderr, kills the plugin and exits 1.
// go-plugin's own log (including the plugin's stderr lines, re-logged through
// hclog) goes to stderr as hclog JSON.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	pluginv1 "confd/plugin/v1"
	"confdinterop/shared"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// ungracefulWatch remembers whether go-plugin had to SIGKILL the plugin.
// go-plugin only reports that through its log, so the log output is scanned.
type ungracefulWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen bool
}

func (w *ungracefulWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), []byte("plugin failed to exit gracefully")) {
		w.seen = true
	}
	// Keep only a tail big enough to catch the phrase across writes.
	if w.buf.Len() > 4096 {
		tail := append([]byte(nil), w.buf.Bytes()[w.buf.Len()-256:]...)
		w.buf.Reset()
		w.buf.Write(tail)
	}
	return len(p), nil
}

func (w *ungracefulWatch) Seen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

var out = json.NewEncoder(os.Stdout)

func emit(fields map[string]interface{}) {
	if err := out.Encode(fields); err != nil {
		fmt.Fprintf(os.Stderr, "confd-interop-host: writing stdout: %v\n", err)
		os.Exit(1)
	}
}

func main() {
	cookie := flag.String("cookie", shared.CookieValue, "magic cookie value to send (tests send a wrong one)")
	var config, keys listFlag
	flag.Var(&config, "config", "Configure setting key=value (repeatable)")
	flag.Var(&keys, "key", "key for GetValues and WatchPrefix (repeatable)")
	prefix := flag.String("prefix", "/", "WatchPrefix prefix")
	waitIndex := flag.Uint64("wait-index", 1, "WatchPrefix wait_index")
	watchOptional := flag.Bool("watch-optional", false, "report an Unimplemented WatchPrefix as not offered instead of failing (for stores that cannot watch)")
	startTimeout := flag.Duration("start-timeout", 20*time.Second, "time allowed for the plugin's handshake")
	callTimeout := flag.Duration("call-timeout", 10*time.Second, "deadline for each call")
	logLevel := flag.String("log-level", "debug", "host log level (trace, debug, info, warn, error)")
	autoMTLS := flag.Bool("auto-mtls", false, "use go-plugin's AutoMTLS (PLUGIN_CLIENT_CERT and a pinned plugin certificate)")
	flag.Parse()
	if flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: confd-interop-host [flags] PLUGIN [ARGS...]")
		os.Exit(2)
	}

	watch := &ungracefulWatch{}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "host",
		Level:      hclog.LevelFromString(*logLevel),
		Output:     io.MultiWriter(os.Stderr, watch),
		JSONFormat: true,
	})

	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake(*cookie),
		Plugins:          map[string]plugin.Plugin{shared.PluginName: &shared.DatabasePlugin{}},
		Cmd:              exec.Command(flag.Arg(0), flag.Args()[1:]...),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     *startTimeout,
		Logger:           logger,
		AutoMTLS:         *autoMTLS,
	})

	fail := func(step string, err error) {
		client.Kill()
		emit(map[string]interface{}{"step": step, "error": err.Error()})
		fmt.Fprintf(os.Stderr, "confd-interop-host: %s failed: %v\n", step, err)
		os.Exit(1)
	}

	rpc, err := client.Client()
	if err != nil {
		fail("start", err)
	}
	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	emit(map[string]interface{}{
		"step":     "start",
		"pid":      pid,
		"protocol": string(client.Protocol()),
		"version":  client.NegotiatedVersion(),
	})

	if err := rpc.Ping(); err != nil {
		fail("ping", err)
	}
	emit(map[string]interface{}{"step": "ping", "ok": true})

	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		fail("dispense", err)
	}
	db := raw.(pluginv1.DatabaseClient)

	settings := map[string]string{}
	for _, kv := range config {
		parts := strings.SplitN(kv, "=", 2)
		if len(parts) != 2 {
			fail("configure", fmt.Errorf("-config %q is not key=value", kv))
		}
		settings[parts[0]] = parts[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), *callTimeout)
	_, err = db.Configure(ctx, &pluginv1.ConfigureRequest{Config: settings})
	cancel()
	if err != nil {
		fail("configure", err)
	}
	emit(map[string]interface{}{"step": "configure", "ok": true})

	ctx, cancel = context.WithTimeout(context.Background(), *callTimeout)
	got, err := db.GetValues(ctx, &pluginv1.GetValuesRequest{Keys: keys})
	cancel()
	if err != nil {
		fail("get_values", err)
	}
	values := got.Values
	if values == nil {
		values = map[string]string{}
	}
	emit(map[string]interface{}{"step": "get_values", "values": values})

	ctx, cancel = context.WithTimeout(context.Background(), *callTimeout)
	stream, err := db.WatchPrefix(ctx, &pluginv1.WatchPrefixRequest{Prefix: *prefix, Keys: keys, WaitIndex: *waitIndex})
	if err != nil {
		cancel()
		fail("watch_prefix", err)
	}
	event, err := stream.Recv()
	// One event is all a watch call promises; cancelling ends the stream.
	cancel()
	switch {
	case *watchOptional && status.Code(err) == codes.Unimplemented:
		emit(map[string]interface{}{"step": "watch_prefix", "offered": false, "message": status.Convert(err).Message()})
	case err != nil:
		fail("watch_prefix", err)
	default:
		emit(map[string]interface{}{"step": "watch_prefix", "offered": true, "index": event.Index})
	}

	ctx, cancel = context.WithTimeout(context.Background(), *callTimeout)
	info, err := db.Info(ctx, &pluginv1.InfoRequest{})
	cancel()
	switch {
	case status.Code(err) == codes.Unimplemented:
		emit(map[string]interface{}{"step": "info", "offered": false})
	case err != nil:
		fail("info", err)
	default:
		caps := info.Capabilities
		if caps == nil {
			caps = []string{}
		}
		emit(map[string]interface{}{
			"step": "info", "offered": true,
			"name": info.Name, "version": info.Version, "capabilities": caps,
		})
	}

	began := time.Now()
	client.Kill()
	emit(map[string]interface{}{
		"step":        "kill",
		"exited":      client.Exited(),
		"graceful":    !watch.Seen(),
		"duration_ms": time.Since(began).Milliseconds(),
	})
}
