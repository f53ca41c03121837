/**
 * A small certificate authority for a cluster (`registry certs init`): one CA, one certificate
 * per node (usable as TLS server and client certificate), and one client certificate for the
 * CLI. Keys are ECDSA P-256 from WebCrypto, certificates are built with @peculiar/x509.
 *
 * Names: a node certificate has subject `CN=<id>` and the subject alternative names
 * `DNS:<id>`, `DNS:localhost`, `IP:127.0.0.1`, `IP:::1` and each extra host; the member name the
 * cluster checks on a peer connection is the subject CN (see `memberNameOf` in `./tls.ts`). The
 * client certificate has `CN=client` ({@link CLIENT_CERT_NAME}), which is therefore refused as a
 * node id, and extended key usage clientAuth only: node certificates carry serverAuth too, and
 * only those are accepted on the peer path.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';
import { chmod, mkdir, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** Validity of generated certificates unless `--days` says otherwise, in days. */
export const DEFAULT_CERT_VALIDITY_DAYS = 365;
/** Longest validity `--days` accepts, in days (ten years). */
export const MAX_CERT_VALIDITY_DAYS = 3650;
/** How far back `notBefore` is set, in ms, so a clock slightly behind still accepts a fresh certificate. */
export const CERT_BACKDATE_MS = 5 * 60_000;
/** Mode of written private keys (owner read/write only). */
export const KEY_FILE_MODE = 0o600;
/** Mode of written certificates. */
export const CERT_FILE_MODE = 0o644;
/** Subject CN of the CLI's client certificate; never a valid node id. */
export const CLIENT_CERT_NAME = 'client';
/** Subject CN of the generated CA. */
export const CA_CERT_NAME = 'registry-cluster-ca';
/** Bytes of a random serial number (positive: the top bit is cleared). */
const SERIAL_BYTES = 16;
const MS_PER_DAY = 86_400_000;

/** The key algorithm of every generated key: ECDSA on P-256, signing with SHA-256. */
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** Node ids a certificate may be made for: what `registry-node --peers` accepts. */
const NODE_ID_PATTERN = /^[A-Za-z0-9._-]+$/;

/** A failure of `registry certs init` with a message for the operator (bad input, a file in the way). */
export class CertsError extends Error {
  override readonly name = 'CertsError';
}

/** Options of {@link initCerts}. */
export interface InitCertsOptions {
  /** Node ids, each gets `<id>.crt` and `<id>.key`; at least one, no duplicates, not `client`. */
  readonly nodes: readonly string[];
  /** Extra DNS names or IP addresses put in every node certificate's SAN. */
  readonly hosts?: readonly string[];
  /** Validity in days, 1..{@link MAX_CERT_VALIDITY_DAYS} (default {@link DEFAULT_CERT_VALIDITY_DAYS}). */
  readonly days?: number;
  /** Overwrite an existing `ca.key` (default false: refuse). */
  readonly force?: boolean;
}

/** Paths of the files {@link initCerts} wrote. */
export interface CertFiles {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  /** Per node id: its certificate and key. */
  readonly nodes: Readonly<Record<string, { readonly cert: string; readonly key: string }>>;
  readonly clientCert: string;
  readonly clientKey: string;
}

/** A key pair and its certificate, PEM-encoded. */
interface Issued {
  readonly cert: x509.X509Certificate;
  readonly certPem: string;
  readonly keyPem: string;
}

function randomSerial(): string {
  const b = randomBytes(SERIAL_BYTES);
  b[0] = (b[0] as number) & 0x7f;
  return b.toString('hex');
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key as unknown as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - CERT_BACKDATE_MS), notAfter: new Date(now + days * MS_PER_DAY) };
}

/** A self-signed CA certificate (basicConstraints CA:true, keyCertSign). */
export async function createCa(days = DEFAULT_CERT_VALIDITY_DAYS): Promise<Issued & { readonly keys: CryptoKeyPair }> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${CA_CERT_NAME}`,
    ...validity(days),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey), keys };
}

/**
 * A leaf certificate `CN=<name>` signed by `ca`, with `hosts` (DNS names or IP addresses) as
 * subject alternative names. `role` `node` gives extended key usages serverAuth and clientAuth
 * (a member: the cluster accepts peer calls only from such a certificate); `client` gives
 * clientAuth only (it can call the API but never pose as a member).
 */
export async function issueCert(
  ca: { readonly cert: x509.X509Certificate; readonly keys: CryptoKeyPair },
  name: string,
  hosts: readonly string[],
  days = DEFAULT_CERT_VALIDITY_DAYS,
  role: 'node' | 'client' = 'node',
): Promise<Issued> {
  const keys = await generateKeys();
  const san = [...new Set(hosts)].map((h) => ({ type: isIP(h) ? ('ip' as const) : ('dns' as const), value: h }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${name}`,
    issuer: ca.cert.subject,
    ...validity(days),
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension(role === 'node' ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth]),
      ...(san.length > 0 ? [new x509.SubjectAlternativeNameExtension(san)] : []),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return { cert, certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/** The SAN hosts of node `id`'s certificate: its id, loopback, and the extra hosts. */
export function nodeHosts(id: string, hosts: readonly string[] = []): string[] {
  return [id, 'localhost', '127.0.0.1', '::1', ...hosts];
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function writeFileMode(path: string, data: string, mode: number): Promise<void> {
  await writeFile(path, data, { mode });
  await chmod(path, mode); // `mode` applies only to a new file; an overwritten one keeps its old mode
}

/**
 * Creates `dir` (if missing) and writes `ca.crt`, `ca.key`, `<id>.crt`/`<id>.key` per node and
 * `client.crt`/`client.key`; keys with mode {@link KEY_FILE_MODE}.
 *
 * @throws {CertsError} when `nodes` is empty, holds a duplicate, an id that is not
 *   `[A-Za-z0-9._-]+` or is `client`; when `days` is not an integer in 1..MAX_CERT_VALIDITY_DAYS;
 *   when `dir/ca.key` exists and `force` is not set.
 */
export async function initCerts(dir: string, options: InitCertsOptions): Promise<CertFiles> {
  const days = options.days ?? DEFAULT_CERT_VALIDITY_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_CERT_VALIDITY_DAYS) {
    throw new CertsError(`--days must be an integer from 1 to ${MAX_CERT_VALIDITY_DAYS}, got ${String(days)}`);
  }
  if (options.nodes.length === 0) throw new CertsError('--nodes must name at least one node id');
  const seen = new Set<string>();
  for (const id of options.nodes) {
    if (!NODE_ID_PATTERN.test(id)) throw new CertsError(`node id ${JSON.stringify(id)} must be letters, digits, '.', '_' or '-'`);
    if (id === CLIENT_CERT_NAME || id === 'ca') throw new CertsError(`node id ${JSON.stringify(id)} is reserved (it names the ${id} certificate)`);
    if (seen.has(id)) throw new CertsError(`node id ${JSON.stringify(id)} appears twice in --nodes`);
    seen.add(id);
  }
  const hosts = (options.hosts ?? []).map((h) => h.trim()).filter((h) => h !== '');
  await mkdir(dir, { recursive: true });
  const caKey = join(dir, 'ca.key');
  if (!options.force && (await exists(caKey))) {
    throw new CertsError(`${caKey} already exists: refusing to replace the cluster's CA key (use --force to overwrite it)`);
  }
  const ca = await createCa(days);
  const caCert = join(dir, 'ca.crt');
  await writeFileMode(caKey, ca.keyPem, KEY_FILE_MODE);
  await writeFileMode(caCert, ca.certPem, CERT_FILE_MODE);
  const nodes: Record<string, { cert: string; key: string }> = {};
  for (const id of options.nodes) {
    const issued = await issueCert(ca, id, nodeHosts(id, hosts), days);
    const files = { cert: join(dir, `${id}.crt`), key: join(dir, `${id}.key`) };
    await writeFileMode(files.key, issued.keyPem, KEY_FILE_MODE);
    await writeFileMode(files.cert, issued.certPem, CERT_FILE_MODE);
    nodes[id] = files;
  }
  const client = await issueCert(ca, CLIENT_CERT_NAME, [], days, 'client');
  const clientCert = join(dir, `${CLIENT_CERT_NAME}.crt`);
  const clientKey = join(dir, `${CLIENT_CERT_NAME}.key`);
  await writeFileMode(clientKey, client.keyPem, KEY_FILE_MODE);
  await writeFileMode(clientCert, client.certPem, CERT_FILE_MODE);
  return { dir, caCert, caKey, nodes, clientCert, clientKey };
}
