package dev.advantageservice.client;

/**
 * TLS for a server started with --tls-cert, PEM bytes (read the files with Files.readAllBytes).
 * rootCertificates: the CA that signed the server's certificate (null = the system's roots).
 * certificateChain and privateKey (PKCS#8): this client's, for mutual TLS (--tls-client-ca);
 * both or neither. authority: the name to check the server's certificate against (null = the
 * target's host).
 */
public record TlsOptions(
    byte[] rootCertificates, byte[] certificateChain, byte[] privateKey, String authority) {
  public TlsOptions {
    if ((certificateChain == null) != (privateKey == null)) {
      throw new IllegalArgumentException(
          "tls: give certificateChain and privateKey together (mutual TLS), or neither");
    }
  }

  /** TLS trusting {@code rootCertificates} (PEM), no client certificate. */
  public static TlsOptions trusting(byte[] rootCertificates) {
    return new TlsOptions(rootCertificates, null, null, null);
  }
}
