// Command confd-interop-plugin is a go-plugin plugin serving confd's Database
// service from an in-memory map. It exists so that confd's Rust host is tested
// against a real HashiCorp go-plugin peer rather than against our own SDK.
//
// Configure stores every setting whose key starts with "/" as a store key;
// any other setting is refused with InvalidArgument. Info is deliberately
// left unimplemented: the host must treat that as "not offered".
//
// Usage: confd-interop-plugin [-expect-cookie VALUE]
// -expect-cookie makes the plugin expect another magic cookie value, as a
// plugin of another application would; tests use it to prove that a host
// reports the plugin's refusal clearly.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
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

// watchDelay stands in for "something changed a moment later".
const watchDelay = 50 * time.Millisecond

type memory struct {
	// Embedding gives Unimplemented answers for Info (and for any RPC added later).
	pluginv1.UnimplementedDatabaseServer

	log hclog.Logger

	mu         sync.Mutex
	configured bool
	data       map[string]string
}

func (m *memory) Configure(_ context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	data := make(map[string]string, len(req.Config))
	for k, v := range req.Config {
		if !strings.HasPrefix(k, "/") {
			m.log.Warn("refused setting", "key", k)
			return nil, status.Errorf(codes.InvalidArgument, "unknown setting %q: store keys must start with /", k)
		}
		data[k] = v
	}
	m.mu.Lock()
	m.data = data
	m.configured = true
	m.mu.Unlock()
	m.log.Info("configured", "keys", len(data))
	return &pluginv1.ConfigureResponse{}, nil
}

// under reports whether key equals want or lies below it as a path.
func under(key, want string) bool {
	if key == want {
		return true
	}
	return strings.HasPrefix(key, strings.TrimSuffix(want, "/")+"/")
}

func (m *memory) GetValues(_ context.Context, req *pluginv1.GetValuesRequest) (*pluginv1.GetValuesResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.configured {
		return nil, status.Error(codes.FailedPrecondition, "GetValues called before Configure")
	}
	values := map[string]string{}
	for k, v := range m.data {
		for _, want := range req.Keys {
			if under(k, want) {
				values[k] = v
				break
			}
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m.log.Debug("get values", "requested", strings.Join(req.Keys, ","), "found", len(keys))
	return &pluginv1.GetValuesResponse{Values: values}, nil
}

func (m *memory) WatchPrefix(req *pluginv1.WatchPrefixRequest, stream pluginv1.Database_WatchPrefixServer) error {
	m.log.Debug("watch started", "prefix", req.Prefix, "wait_index", req.WaitIndex)
	select {
	case <-stream.Context().Done():
		m.log.Debug("watch cancelled", "prefix", req.Prefix)
		return status.FromContextError(stream.Context().Err()).Err()
	case <-time.After(watchDelay):
	}
	return stream.Send(&pluginv1.WatchPrefixResponse{Index: req.WaitIndex + 1})
}

func main() {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "interop-plugin",
		Level:      hclog.Trace,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	cookie := flag.String("expect-cookie", shared.CookieValue, "magic cookie value this plugin expects")
	flag.Parse()
	if flag.NArg() > 0 {
		// Saying so beats silently ignoring arguments a host passed by mistake.
		fmt.Fprintf(os.Stderr, "confd-interop-plugin takes no positional arguments, got %q\n", flag.Args())
		os.Exit(2)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake(*cookie),
		Plugins: map[string]plugin.Plugin{
			shared.PluginName: &shared.DatabasePlugin{Impl: &memory{log: logger}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     logger,
	})
}
