package advantage

import (
	"strings"

	"google.golang.org/grpc/resolver"
)

// listResolver resolves the "ipv4:///a:p,b:q" and "ipv6:///[a]:p,…" targets of ChannelTarget to
// their addresses, as gRPC's C core and grpc-js do; grpc-go has no such scheme built in. It is
// given to each channel (grpc.WithResolvers), not registered globally.
type listResolver struct{ scheme string }

func (b listResolver) Scheme() string { return b.scheme }

func (b listResolver) Build(target resolver.Target, cc resolver.ClientConn,
	_ resolver.BuildOptions) (resolver.Resolver, error) {
	var addresses []resolver.Address
	for _, address := range strings.Split(target.Endpoint, ",") {
		if address != "" {
			addresses = append(addresses, resolver.Address{Addr: address})
		}
	}
	cc.UpdateState(resolver.State{Addresses: addresses})
	return fixedAddresses{}, nil
}

// fixedAddresses is the resolver of a list that never changes.
type fixedAddresses struct{}

func (fixedAddresses) ResolveNow(resolver.ResolveNowOptions) {}
func (fixedAddresses) Close()                                {}
