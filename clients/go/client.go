package advantage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/health" // the channel's client-side health checking
	"google.golang.org/grpc/metadata"

	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

// DefaultServiceConfig is the gRPC service config every channel carries unless Options says
// otherwise: round_robin over the target's servers, only to those whose gRPC health is SERVING,
// and up to 5 attempts of a call answered UNAVAILABLE (never SetParameters). The same as the
// Python, TypeScript and C++ clients'. grpc-go before 1.40 (Debian 12 ships 1.33) retries only
// with GRPC_GO_RETRY=on in the environment.
const DefaultServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": "advantage.v1.AdvantageService"},
  "methodConfig": [
    {"name": [{"service": "advantage.v1.AdvantageService"}],
     "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
                     "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}},
    {"name": [{"service": "advantage.v1.AdvantageService", "method": "SetParameters"}]}]}`

// DefaultMaxMessageMB caps requests and responses (gRPC's own default is 4 MiB).
const DefaultMaxMessageMB = 256

// TLS configures a TLS channel (a server started with --tls-cert). PEM bytes; read the files
// with os.ReadFile.
type TLS struct {
	// CA certificate(s) that signed the server's certificate; nil = the system's roots.
	RootCertificates []byte
	// Mutual TLS (--tls-client-ca): this client's certificate chain and private key, both or
	// neither.
	CertificateChain, PrivateKey []byte
	// Name to check the server's certificate against; "" = the target's host.
	ServerName string
}

func (t *TLS) credentials() (credentials.TransportCredentials, error) {
	if (t.CertificateChain == nil) != (t.PrivateKey == nil) {
		return nil, errors.New("tls: give CertificateChain and PrivateKey together (mutual TLS), or neither")
	}
	config := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.RootCertificates != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.RootCertificates) {
			return nil, errors.New("tls: RootCertificates holds no PEM certificate")
		}
		config.RootCAs = pool
	}
	if t.CertificateChain != nil {
		pair, err := tls.X509KeyPair(t.CertificateChain, t.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(config), nil
}

// Options configure a Client; the zero value is a plaintext channel with no token and no
// deadline.
type Options struct {
	// TLS for a server started with --tls-cert; nil = plaintext.
	TLS *TLS
	// Bearer token for a server started with auth tokens: every call (through Stub() too) sends
	// "authorization: Bearer <Token>".
	Token string
	// Deadline of each call whose context has none; 0 = no deadline.
	Timeout time.Duration
	// Largest request or response, in MiB; 0 = DefaultMaxMessageMB.
	MaxMessageMB int
	// The gRPC service config; "" = DefaultServiceConfig. "{}" = gRPC's defaults (pick_first,
	// no retries).
	ServiceConfig string
	// More grpc.DialOptions, applied last.
	DialOptions []grpc.DialOption
}

// Client is a connection to advantage-service. Safe for concurrent use; Close it when done.
type Client struct {
	conn    *grpc.ClientConn
	stub    pb.AdvantageServiceClient
	timeout time.Duration
}

// ChannelTarget joins a list of "ip:port" (one address family) into one "ipv4:///a,b" or
// "ipv6:///[a]:p,…" target, so that the channel balances over them. gRPC resolves no list of
// names: use a "dns:///name:port" target for a name that resolves to every server.
func ChannelTarget(addresses []string) (string, error) {
	if len(addresses) == 0 {
		return "", errors.New("target: no addresses")
	}
	family := ""
	for _, address := range addresses {
		host, port, err := net.SplitHostPort(address)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || port == "" {
			return "", fmt.Errorf("target: %q in a list is not \"ip:port\" (\"[ipv6]:port\"); use a "+
				"\"dns:///name:port\" target for a name that resolves to every server", address)
		}
		f := "ipv6"
		if ip.To4() != nil {
			f = "ipv4"
		}
		if family != "" && f != family {
			return "", fmt.Errorf("target: mixes IPv4 and IPv6 addresses %s; use one family",
				strings.Join(addresses, ", "))
		}
		family = f
	}
	return family + ":///" + strings.Join(addresses, ","), nil
}

// Dial opens a channel to target: "host:port", "dns:///name:port", or an "ipv4:///…" list (see
// ChannelTarget). The connection is made lazily; the first call fails with UNAVAILABLE when no
// server answers.
func Dial(target string, options Options) (*Client, error) {
	mb := options.MaxMessageMB
	if mb == 0 {
		mb = DefaultMaxMessageMB
	}
	if mb < 0 {
		return nil, fmt.Errorf("MaxMessageMB must be > 0, got %d", mb)
	}
	limit := mb << 20
	config := options.ServiceConfig
	if config == "" {
		config = DefaultServiceConfig
	}
	dial := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit), grpc.MaxCallSendMsgSize(limit)),
		grpc.WithDefaultServiceConfig(config),
		grpc.WithResolvers(listResolver{"ipv4"}, listResolver{"ipv6"}), // ChannelTarget's lists
	}
	if options.TLS != nil {
		creds, err := options.TLS.credentials()
		if err != nil {
			return nil, err
		}
		dial = append(dial, grpc.WithTransportCredentials(creds))
	} else {
		dial = append(dial, grpc.WithInsecure())
	}
	if options.Token != "" {
		bearer := "Bearer " + options.Token
		dial = append(dial,
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply interface{},
				cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", bearer)
				return invoker(ctx, method, req, reply, cc, opts...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc,
				cc *grpc.ClientConn, method string, streamer grpc.Streamer,
				opts ...grpc.CallOption) (grpc.ClientStream, error) {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", bearer)
				return streamer(ctx, desc, cc, method, opts...)
			}))
	}
	dial = append(dial, options.DialOptions...)
	conn, err := grpc.Dial(target, dial...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, stub: pb.NewAdvantageServiceClient(conn), timeout: options.Timeout}, nil
}

// Close closes the channel; calls in flight are cancelled.
func (c *Client) Close() error { return c.conn.Close() }

// Stub is the generated stub on the client's channel (token and service config included), for
// the RPCs the typed methods do not cover (SetParameters, WatchModels).
func (c *Client) Stub() pb.AdvantageServiceClient { return c.stub }

// withTimeout applies the client's Timeout to a context that has no deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, has := ctx.Deadline(); has || c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// ComputeAdvantage returns the advantages and value targets of a batch of trajectories.
// A malformed request is refused before anything is sent (a plain error naming the field);
// a failed call returns *Error.
func (c *Client) ComputeAdvantage(ctx context.Context, request AdvantageRequest) (*AdvantageResult, error) {
	w, err := request.Proto()
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := c.stub.ComputeAdvantage(ctx, w)
	if err != nil {
		return nil, wrap(err)
	}
	return advantageFromProto(res), nil
}

// ComputeLoss computes a policy/critic loss on the server's networks; with ApplyUpdate also one
// optimizer step.
func (c *Client) ComputeLoss(ctx context.Context, request LossRequest) (*LossResult, error) {
	w, err := request.Proto()
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := c.stub.ComputeLoss(ctx, w)
	if err != nil {
		return nil, wrap(err)
	}
	return lossFromProto(res), nil
}

// ListModels returns every model the server holds, sorted by name.
func (c *Client) ListModels(ctx context.Context) ([]ModelInfo, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := c.stub.ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return nil, wrap(err)
	}
	out := make([]ModelInfo, 0, len(res.GetModels()))
	for _, m := range res.GetModels() {
		out = append(out, modelFromProto(m))
	}
	return out, nil
}

// GetModel describes one model ("" = the server's default); NOT_FOUND for an unknown name.
func (c *Client) GetModel(ctx context.Context, name string) (*ModelInfo, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := c.stub.GetModel(ctx, &pb.GetModelRequest{ModelName: name})
	if err != nil {
		return nil, wrap(err)
	}
	m := modelFromProto(res.GetModel())
	return &m, nil
}
