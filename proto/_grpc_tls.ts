/**
 * TLS for RpcServer and RpcChannel: checks of the PEM texts, the client's
 * channel credentials, and plain language for node:tls failures. Private to
 * `proto/`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { isIP } from "node:net";
import {
  checkServerIdentity,
  connect as tlsConnect,
  createSecureContext,
  type SecureContext,
} from "node:tls";
import { createPrivateKey, X509Certificate } from "node:crypto";

/** TLS for an {@linkcode RpcChannel}: PEM texts, not file names. */
export interface RpcChannelTls {
  /** CA certificate(s) the server's certificate must chain to, PEM; the default roots when unset. */
  ca?: string;
  /** A client certificate (chain), PEM, for servers that require one (mutual TLS); needs `key`. */
  cert?: string;
  /** The client certificate's private key, PEM (unencrypted); needs `cert`. */
  key?: string;
  /**
   * The name the server's certificate must carry, when it differs from the
   * address's host (a DNS name or an IP address). Also sent as SNI when it is a DNS name.
   */
  serverName?: string;
}

/** A TLS handshake takes a round trip or two; one not done by then is stalled or hostile. */
export const TLS_HANDSHAKE_MS = 10_000;

/**
 * Fails fast on PEM texts that cannot work: node:tls in Deno accepts anything
 * when the context is made and only fails each handshake later.
 */
export function checkTlsPems(
  side: "server" | "client",
  tls: { cert?: string; key?: string; ca?: string },
): void {
  let cert: X509Certificate | undefined;
  if (tls.cert !== undefined) {
    try {
      cert = new X509Certificate(tls.cert);
    } catch (err) {
      throw new Error(
        `TLS ${side} certificate is not a PEM certificate: ${(err as Error).message}`,
      );
    }
  }
  if (tls.key !== undefined) {
    let key;
    try {
      key = createPrivateKey(tls.key);
    } catch (err) {
      throw new Error(`TLS ${side} key is not a PEM private key: ${(err as Error).message}`);
    }
    if (cert !== undefined && !cert.checkPrivateKey(key)) {
      throw new Error(`TLS ${side} key does not match the ${side} certificate`);
    }
  }
  if (tls.ca !== undefined) {
    try {
      new X509Certificate(tls.ca);
    } catch (err) {
      throw new Error(`TLS CA is not a PEM certificate: ${(err as Error).message}`);
    }
  }
}

/**
 * Plain language for the node:tls failures a misconfigured TLS hop shows (as
 * Deno 2.9's node:tls words them), or undefined for failures that are not TLS's.
 */
export function nodeTlsReason(cause: string): string | undefined {
  if (
    /unable to verify the first certificate|unable to get (local )?issuer|self[- ]signed certificate/
      .test(cause)
  ) {
    return `certificate signed by an unknown authority (check --tls-ca): ${cause}`;
  }
  if (/does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/.test(cause)) {
    return `certificate not valid for this server's name: ${cause}`;
  }
  if (/certificate has expired|not yet valid/.test(cause)) return `server certificate: ${cause}`;
  if (/CertificateRequired/.test(cause)) {
    return `the server requires a client certificate (${cause})`;
  }
  if (
    /fatal alert: (BadCertificate|UnknownCA|CertificateUnknown|AccessDenied|DecryptError)/.test(
      cause,
    )
  ) {
    return `the server refused the client certificate (${cause})`;
  }
  if (
    /wrong version number|corrupt message|packet length too long|InvalidContentType/.test(cause)
  ) {
    return `the server does not speak TLS (${cause})`;
  }
  if (/TLS|SSL|certificate|handshake|alert/i.test(cause)) return cause;
  return undefined;
}

type SecureConnector = ReturnType<grpc.ChannelCredentials["_createSecureConnector"]>;

/**
 * Client TLS, done here rather than by `grpc.credentials.createSsl`: grpc-js
 * always passes the target host as `servername` (SNI), and Deno's node:tls
 * throws on an IP address there ("The property 'options.servername' must not
 * be an IP address"), so createSsl cannot reach `127.0.0.1:9090`. This sends
 * SNI only for DNS names and still verifies the certificate against the IP.
 */
export class TlsChannelCredentials extends grpc.ChannelCredentials {
  readonly #context: SecureContext;
  readonly #name: string;
  /** The last handshake that failed, until one succeeds. */
  lastFailure: { error: Error; at: number } | undefined;

  constructor(tls: RpcChannelTls, name: string) {
    super();
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new Error("A TLS client certificate and its key go together: give both or neither");
    }
    checkTlsPems("client", tls);
    this.#context = createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key });
    this.#name = name;
  }

  override _isSecure(): boolean {
    return true;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(
    _target: unknown,
    _options: unknown,
    callCredentials?: grpc.CallCredentials,
  ): SecureConnector {
    const context = this.#context;
    const name = this.#name;
    const servername = isIP(name) === 0 ? name : undefined;
    return {
      connect: (socket) =>
        new Promise((resolve, reject) => {
          let done = false;
          const fail = (error: Error) => {
            if (done) return;
            done = true;
            this.lastFailure = { error, at: Date.now() };
            reject(error);
          };
          const tlsSocket = tlsConnect({
            socket,
            secureContext: context,
            servername,
            ALPNProtocols: ["h2"],
            checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
          }, () => {
            if (!tlsSocket.authorized) {
              fail(tlsSocket.authorizationError);
              tlsSocket.destroy();
              return;
            }
            done = true;
            this.lastFailure = undefined;
            resolve({ socket: tlsSocket, secure: true });
          });
          // Errors after the handshake are the HTTP/2 session's to report.
          tlsSocket.on("error", fail);
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => callCredentials ?? grpc.credentials.createEmpty(),
      destroy: () => {},
    };
  }
}
