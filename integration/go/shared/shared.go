// Package shared holds what the interop host and plugin must agree on: the
// go-plugin handshake and the plugin-map entry for confd's Database service.
// It exists so that both Go peers use exactly the values confd uses.
package shared

import (
	"context"

	pluginv1 "confd/plugin/v1"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// CookieKey and CookieValue are confd's magic cookie (see the protocol reference, section 4).
const (
	CookieKey   = "CONFD_PLUGIN_MAGIC_COOKIE"
	CookieValue = "xtanpmnh5nqffr256vnevap59w86p3wmxkfkcp9hx4fzf5frjc3tf3tkcczcatyd"
	// PluginName is the key in go-plugin's plugin map; it never travels on the wire.
	PluginName = "database"
)

// Handshake returns the handshake config, with the cookie value replaced when
// a test wants to prove that a wrong cookie is refused.
func Handshake(cookie string) plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  1,
		MagicCookieKey:   CookieKey,
		MagicCookieValue: cookie,
	}
}

// DatabasePlugin connects go-plugin's plugin map to the generated gRPC code.
// Impl is only set on the plugin side.
type DatabasePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pluginv1.DatabaseServer
}

// GRPCServer registers the Database service next to go-plugin's own services.
func (p *DatabasePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterDatabaseServer(s, p.Impl)
	return nil
}

// GRPCClient hands the host the raw generated client: the host wants to see
// the wire results, not a wrapper's interpretation of them.
func (p *DatabasePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return pluginv1.NewDatabaseClient(c), nil
}
