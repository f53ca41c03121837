/**
 * `registry certs init` (src/auth/certs.ts): the generated chain verifies with node:crypto, the
 * names and usages are what the cluster checks, keys are private to their owner, and the TLS
 * loader (src/auth/tls.ts) accepts the files and names each bad one.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CertsError, initCerts, KEY_FILE_MODE, type CertFiles } from '../../src/auth/certs.js';
import { isLoopbackHost, isMemberCertificate, loadClientTlsFiles, loadTlsFiles, memberNameOf, TlsConfigError } from '../../src/auth/tls.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'registry-certs-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('registry certs init', () => {
  let files: CertFiles;
  let dir: string;

  it('writes a CA, a certificate per node and a client certificate that verify with node:crypto', async () => {
    dir = tempDir();
    files = await initCerts(dir, { nodes: ['n1', 'n2', 'n3'], hosts: ['registry.example', '10.0.0.7'], days: 30 });
    const ca = new X509Certificate(readFileSync(files.caCert));
    expect(ca.ca).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    for (const id of ['n1', 'n2', 'n3']) {
      const f = files.nodes[id]!;
      const cert = new X509Certificate(readFileSync(f.cert));
      expect(cert.ca).toBe(false);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.checkIssued(ca)).toBe(true);
      expect(cert.checkPrivateKey(createPrivateKey(readFileSync(f.key)))).toBe(true);
      expect(memberNameOf(cert)).toBe(id);
      expect(cert.subjectAltName).toContain(`DNS:${id}`);
      expect(cert.subjectAltName).toContain('DNS:localhost');
      expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
      expect(cert.subjectAltName).toContain('DNS:registry.example');
      expect(cert.subjectAltName).toContain('IP Address:10.0.0.7');
      expect(cert.checkHost('localhost')).toBe('localhost');
      expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
      expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
      const days = (new Date(cert.validTo).getTime() - Date.now()) / 86_400_000;
      expect(days).toBeGreaterThan(29);
      expect(days).toBeLessThan(31);
    }
    const client = new X509Certificate(readFileSync(files.clientCert));
    expect(client.verify(ca.publicKey)).toBe(true);
    expect(memberNameOf(client)).toBe('client');
    // The CLI's certificate can authenticate to the API but not act as a member.
    expect(client.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(isMemberCertificate(client)).toBe(false);
    expect(isMemberCertificate(new X509Certificate(readFileSync(files.nodes.n1!.cert)))).toBe(true);
  });

  it('writes the private keys with mode 0600', () => {
    for (const key of [files.caKey, files.clientKey, ...Object.values(files.nodes).map((n) => n.key)]) {
      expect(statSync(key).mode & 0o777).toBe(KEY_FILE_MODE);
    }
  });

  it('refuses to overwrite an existing ca.key unless forced', async () => {
    await expect(initCerts(dir, { nodes: ['n1'] })).rejects.toThrow(/ca\.key already exists.*--force/);
    const before = readFileSync(files.caKey, 'utf8');
    await initCerts(dir, { nodes: ['n1'], force: true });
    expect(readFileSync(files.caKey, 'utf8')).not.toBe(before);
  });

  it('refuses bad node lists and validity', async () => {
    const d = tempDir();
    await expect(initCerts(d, { nodes: [] })).rejects.toThrow(CertsError);
    await expect(initCerts(d, { nodes: ['n1', 'n1'] })).rejects.toThrow(/appears twice/);
    await expect(initCerts(d, { nodes: ['client'] })).rejects.toThrow(/reserved/);
    await expect(initCerts(d, { nodes: ['a b'] })).rejects.toThrow(/letters, digits/);
    await expect(initCerts(d, { nodes: ['n1'], days: 0 })).rejects.toThrow(/--days/);
  });
});

describe('loading TLS files', () => {
  it('accepts a node certificate of the cluster and names its member', async () => {
    const d = tempDir();
    const f = await initCerts(d, { nodes: ['n1', 'n2'] });
    const m = loadTlsFiles({ cert: f.nodes.n1!.cert, key: f.nodes.n1!.key, ca: f.caCert });
    expect(m.name).toBe('n1');
    expect(loadClientTlsFiles({ ca: f.caCert }).cert).toBeUndefined();
    expect(loadClientTlsFiles({ ca: f.caCert, cert: f.clientCert, key: f.clientKey }).cert).toBeDefined();
  });

  it('names the flag and file of a missing, non-PEM, mismatched or foreign file', async () => {
    const d = tempDir();
    const f = await initCerts(join(d, 'a'), { nodes: ['n1', 'n2'] });
    const other = await initCerts(join(d, 'b'), { nodes: ['n1'] });
    const good = { cert: f.nodes.n1!.cert, key: f.nodes.n1!.key, ca: f.caCert };
    const missing = join(d, 'missing.crt');
    expect(() => loadTlsFiles({ ...good, cert: missing })).toThrow(new TlsConfigError(`--tls-cert ${missing}: cannot read the certificate: no such file`));
    const junk = join(d, 'junk.pem');
    writeFileSync(junk, 'hello');
    expect(() => loadTlsFiles({ ...good, key: junk })).toThrow(/--tls-key .*junk\.pem: not a PEM private key/);
    expect(() => loadTlsFiles({ ...good, key: f.nodes.n2!.key })).toThrow(/--tls-key .*n2\.key: the key does not match the certificate --tls-cert .*n1\.crt/);
    expect(() => loadTlsFiles({ ...good, ca: other.caCert })).toThrow(/--tls-cert .*n1\.crt: the certificate is not signed by the CA --tls-ca/);
    expect(() => loadTlsFiles({ ...good, ca: f.nodes.n2!.cert })).toThrow(/--tls-ca .*: the certificate is not a CA/);
    expect(() => loadTlsFiles(good, undefined, new Date(Date.now() + 400 * 86_400_000))).toThrow(/expired/);
    expect(() => loadClientTlsFiles({ ca: f.caCert, cert: f.clientCert })).toThrow(/--cert and --key go together/);
  });

  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '10.0.0.1', '::', 'example.com', '128.0.0.1']) expect(isLoopbackHost(h)).toBe(false);
  });
});

describe('registry certs init (the CLI command)', () => {
  it('writes the files and refuses a second run without --force', async () => {
    const { runCli } = await import('../../src/cli/registry.js');
    const d = join(tempDir(), 'certs');
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l), isTTY: false };
    expect(await runCli(['certs', 'init', d, '--nodes', 'n1,n2', '--hosts', 'db.example', '--days', '10'], io)).toBe(0);
    expect(out.join('\n')).toContain(join(d, 'n2.crt'));
    const n2 = new X509Certificate(readFileSync(join(d, 'n2.crt')));
    expect(n2.subjectAltName).toContain('DNS:db.example');
    expect(statSync(join(d, 'ca.key')).mode & 0o777).toBe(KEY_FILE_MODE);
    expect(await runCli(['certs', 'init', d, '--nodes', 'n1'], io)).toBe(1);
    expect(err.join('\n')).toMatch(/error: INVALID_ARGUMENT .*ca\.key already exists/);
    expect(await runCli(['certs', 'init', d, '--nodes', 'n1', '--force'], io)).toBe(0);
  });
});
