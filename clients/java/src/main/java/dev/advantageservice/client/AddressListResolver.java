package dev.advantageservice.client;

import io.grpc.Attributes;
import io.grpc.EquivalentAddressGroup;
import io.grpc.NameResolver;
import io.grpc.Status;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;

/**
 * Resolves the "ipv4:///a:p,b:q" and "ipv6:///[a]:p,..." targets of
 * {@link AdvantageClient#channelTarget} to their addresses, as gRPC's C core and grpc-js do;
 * grpc-java has no such scheme built in. Given to the channels whose target uses it.
 */
final class AddressListResolver extends NameResolver.Factory {
  private final String scheme;

  AddressListResolver(String scheme) {
    this.scheme = scheme;
  }

  /** The resolver for {@code target} when it is an address list, else null. */
  static AddressListResolver forTarget(String target) {
    for (String scheme : List.of("ipv4", "ipv6")) {
      if (target.startsWith(scheme + ":///")) {
        return new AddressListResolver(scheme);
      }
    }
    return null;
  }

  @Override
  public String getDefaultScheme() {
    return scheme;
  }

  @Override
  public NameResolver newNameResolver(URI target, NameResolver.Args args) {
    if (!scheme.equals(target.getScheme())) {
      return null;
    }
    String list = target.getPath().startsWith("/") ? target.getPath().substring(1) : target.getPath();
    List<EquivalentAddressGroup> groups = new ArrayList<>();
    String problem = null;
    for (String address : list.split(",")) {
      int cut = address.lastIndexOf(':');
      String host = cut < 0 ? address : address.substring(0, cut).replace("[", "").replace("]", "");
      try {
        int port = Integer.parseInt(address.substring(cut + 1));
        // An IP literal: getByName parses it, no lookup.
        groups.add(new EquivalentAddressGroup(new InetSocketAddress(InetAddress.getByName(host), port)));
      } catch (NumberFormatException | UnknownHostException | StringIndexOutOfBoundsException e) {
        problem = "not an ip:port address: " + address;
      }
    }
    String authority = list.split(",")[0];
    String failure = problem;
    return new NameResolver() {
      @Override
      public String getServiceAuthority() {
        return authority;
      }

      @Override
      public void start(Listener2 listener) {
        if (failure != null) {
          listener.onError(Status.UNAVAILABLE.withDescription(failure));
          return;
        }
        listener.onResult(ResolutionResult.newBuilder()
            .setAddresses(groups).setAttributes(Attributes.EMPTY).build());
      }

      @Override
      public void shutdown() {}
    };
  }
}
