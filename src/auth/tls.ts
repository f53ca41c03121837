/**
 * Transport security settings: loading a node's TLS files (`--tls-cert`, `--tls-key`,
 * `--tls-ca`, PEM), checking them at start, and turning them into gRPC and HTTPS credentials.
 *
 * - The one gRPC port of a node serves peers and clients alike with mutual TLS: a client
 *   certificate signed by the cluster CA is required ({@link grpcServerCredentials}).
 * - A node dials its peers and its leader with its own certificate as client certificate, and
 *   checks that the server it reached is the member it meant ({@link peerChannelCredentials}).
 * - The HTTP front end serves HTTPS with the node's certificate but asks for no client
 *   certificate ({@link httpsServerOptions}): browsers and curl use tokens there.
 *
 * Member names: the name of a member in a certificate is its subject common name (CN), see
 * {@link memberNameOf}. `registry certs init` issues node certificates with `CN=<id>` and the
 * SANs `DNS:<id>`, `DNS:localhost`, `IP:127.0.0.1`, `IP:::1`.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

/** Paths of a node's TLS files, PEM-encoded. */
export interface TlsFiles {
  /** This node's certificate (`--tls-cert`); may be followed by intermediates. */
  readonly cert: string;
  /** Its private key (`--tls-key`). */
  readonly key: string;
  /** The cluster CA certificate (`--tls-ca`) that signs every member's and client's certificate. */
  readonly ca: string;
}

/** The flag names the error messages use for each file. */
export interface TlsFlagNames {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

/** The flags of `registry-node`. */
export const NODE_TLS_FLAGS: TlsFlagNames = { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' };
/** The flags of the `registry` CLI. */
export const CLIENT_TLS_FLAGS: TlsFlagNames = { cert: '--cert', key: '--key', ca: '--cacert' };

/** A node's TLS material, read and checked. */
export interface TlsMaterial {
  /** The certificate chain, PEM bytes as read. */
  readonly cert: Buffer;
  /** The private key, PEM bytes as read. */
  readonly key: Buffer;
  /** The CA certificate, PEM bytes as read. */
  readonly ca: Buffer;
  /** This node's name in its certificate ({@link memberNameOf}); undefined when it has no CN. */
  readonly name: string | undefined;
}

/** TLS settings of a client: the CA to trust and, for mutual TLS, a client certificate and key. */
export interface ClientTlsOptions {
  /** The cluster CA certificate, PEM. */
  readonly ca: Buffer | string;
  /** A client certificate, PEM (required by the nodes' gRPC port). */
  readonly cert?: Buffer | string;
  /** Its private key, PEM. */
  readonly key?: Buffer | string;
}

/** A TLS file that is missing, unreadable, malformed or does not fit the others; the message names the flag and file. */
export class TlsConfigError extends Error {
  override readonly name = 'TlsConfigError';
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----/;
const PEM_KEY = /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/;

function readPem(flag: string, path: string, what: string, pattern: RegExp): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new TlsConfigError(`${flag} ${path}: cannot read the ${what}: ${why}`);
  }
  if (!pattern.test(data.toString('latin1'))) throw new TlsConfigError(`${flag} ${path}: not a PEM ${what}`);
  return data;
}

function parseCert(flag: string, path: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new TlsConfigError(`${flag} ${path}: not a valid PEM certificate (${(err as Error).message})`);
  }
}

function checkDates(flag: string, path: string, cert: X509Certificate, now: Date): void {
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (now < from) throw new TlsConfigError(`${flag} ${path}: the certificate is not valid before ${from.toISOString()}`);
  if (now > to) throw new TlsConfigError(`${flag} ${path}: the certificate expired on ${to.toISOString()}`);
}

/**
 * Reads and checks `files`: each exists, is readable and PEM; the key parses and belongs to the
 * certificate; the certificate is signed by the CA; CA and certificate are valid at `now`.
 *
 * @throws {TlsConfigError} naming the flag (from `flags`) and the file of the first problem.
 */
export function loadTlsFiles(files: TlsFiles, flags: TlsFlagNames = NODE_TLS_FLAGS, now = new Date()): TlsMaterial {
  const ca = readPem(flags.ca, files.ca, 'CA certificate', PEM_CERT);
  const cert = readPem(flags.cert, files.cert, 'certificate', PEM_CERT);
  const key = readPem(flags.key, files.key, 'private key', PEM_KEY);
  const caCert = parseCert(flags.ca, files.ca, ca);
  if (!caCert.ca) throw new TlsConfigError(`${flags.ca} ${files.ca}: the certificate is not a CA (basicConstraints CA:false)`);
  const leaf = parseCert(flags.cert, files.cert, cert);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new TlsConfigError(`${flags.key} ${files.key}: not a valid PEM private key (${(err as Error).message})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsConfigError(`${flags.key} ${files.key}: the key does not match the certificate ${flags.cert} ${files.cert}`);
  }
  if (!leaf.verify(caCert.publicKey)) {
    throw new TlsConfigError(`${flags.cert} ${files.cert}: the certificate is not signed by the CA ${flags.ca} ${files.ca}`);
  }
  checkDates(flags.ca, files.ca, caCert, now);
  checkDates(flags.cert, files.cert, leaf, now);
  return { cert, key, ca, name: memberNameOf(leaf) };
}

/**
 * Reads a client's TLS files (`--cacert`, optional `--cert`/`--key`, both or neither).
 * @throws {TlsConfigError} naming the flag and file of the first problem.
 */
export function loadClientTlsFiles(files: { readonly ca: string; readonly cert?: string; readonly key?: string }, flags: TlsFlagNames = CLIENT_TLS_FLAGS): ClientTlsOptions {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new TlsConfigError(`${flags.cert} and ${flags.key} go together: give both or neither`);
  }
  if (files.cert !== undefined && files.key !== undefined) {
    const m = loadTlsFiles({ ca: files.ca, cert: files.cert, key: files.key }, flags);
    return { ca: m.ca, cert: m.cert, key: m.key };
  }
  const ca = readPem(flags.ca, files.ca, 'CA certificate', PEM_CERT);
  parseCert(flags.ca, files.ca, ca);
  return { ca };
}

/**
 * The member name in a certificate: its subject common name (CN). Accepts a node:crypto
 * `X509Certificate` or the `PeerCertificate` of a TLS socket (what gRPC's auth context holds).
 * Returns undefined when there is no certificate or no CN.
 */
export function memberNameOf(cert: X509Certificate | PeerCertificate | undefined | null): string | undefined {
  if (!cert) return undefined;
  if (cert instanceof X509Certificate) {
    for (const line of cert.subject.split('\n')) {
      if (line.startsWith('CN=')) return line.slice(3);
    }
    return undefined;
  }
  const cn = (cert.subject as Record<string, string | string[]> | undefined)?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** Object identifier of the serverAuth extended key usage (RFC 5280 §4.2.1.12). */
export const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

/**
 * Whether a certificate may act as a cluster member: it has the serverAuth extended key usage
 * (node certificates have serverAuth and clientAuth; the CLI's client certificate only
 * clientAuth), or no extended key usage at all (any use). Accepts what {@link memberNameOf} does.
 */
export function isMemberCertificate(cert: X509Certificate | PeerCertificate | undefined | null): boolean {
  if (!cert) return false;
  const usages = cert instanceof X509Certificate ? cert.keyUsage : (cert as PeerCertificate & { ext_key_usage?: string[] }).ext_key_usage;
  return usages === undefined || usages.includes(SERVER_AUTH_OID);
}

/**
 * gRPC server credentials with mutual TLS: the node's certificate, and a client certificate
 * signed by the CA required of every connection (peers and clients alike).
 */
export function grpcServerCredentials(tls: TlsMaterial): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/**
 * Channel credentials for dialing member `expected` (a peer or the leader): this node's
 * certificate as client certificate, the CA as the only trust root, and a server identity check
 * that accepts only a certificate whose member name ({@link memberNameOf}) is `expected` — the
 * address could belong to anyone holding a cluster certificate. A mismatch fails the connection
 * (the call sees `UNAVAILABLE` with the reason).
 */
export function peerChannelCredentials(tls: TlsMaterial, expected: string): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(tls.ca, tls.key, tls.cert, {
    checkServerIdentity: (_host, cert) => {
      const name = memberNameOf(cert);
      return name === expected ? undefined : new Error(`the server's certificate names ${JSON.stringify(name ?? '')}, expected member ${JSON.stringify(expected)}`);
    },
  });
}

/**
 * Channel options to go with {@link peerChannelCredentials} for member `expected`: the TLS
 * server name (SNI) becomes the member id instead of the IP address dialed (which RFC 6066
 * does not allow, and Node warns about). The identity check stays {@link peerChannelCredentials}'s.
 */
export function peerChannelOptions(expected: string): grpc.ChannelOptions {
  return { 'grpc.ssl_target_name_override': expected };
}

/**
 * Channel credentials of a client: trusts `ca`, presents `cert`/`key` when given (the nodes'
 * gRPC port refuses a client without one). The server's certificate must name the host dialed
 * (node certificates from `registry certs init` carry `localhost`, `127.0.0.1`, `::1`, the node
 * id and any `--hosts`).
 */
export function clientChannelCredentials(tls: ClientTlsOptions): grpc.ChannelCredentials {
  const buf = (v: Buffer | string | undefined): Buffer | null => (v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v));
  return grpc.credentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert));
}

/** Options for Node's `https.createServer` (Fastify's `https`): the node's certificate; no client certificate asked. */
export function httpsServerOptions(tls: TlsMaterial): { cert: Buffer; key: Buffer; ca: Buffer } {
  return { cert: tls.cert, key: tls.key, ca: tls.ca };
}

/** Whether `host` (of a `host:port`) is a loopback address: 127.0.0.0/8, ::1 or localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
