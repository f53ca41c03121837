/**
 * `registry certs init DIR --nodes n1,n2,n3 [--hosts h1,h2] [--days N] [--force]`: makes a
 * cluster CA and the certificates of its nodes and of the CLI (see `src/auth/certs.ts`).
 * Registered on the `registry` program by {@link registerCertsCommand}.
 */
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_CERT_VALIDITY_DAYS, initCerts } from '../auth/certs.js';

/** Splits `a,b,c` into its non-empty, trimmed parts. */
function list(value: string): string[] {
  return value.split(',').map((v) => v.trim()).filter((v) => v !== '');
}

function days(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('--days must be a positive integer');
  return n;
}

/**
 * Adds `certs init` to `program`; it writes one line per file made through `out` (or one JSON
 * document when the global `--json` is set). Failures are thrown: a `CertsError` (bad input,
 * an existing `ca.key` without `--force`) or a system error.
 */
export function registerCertsCommand(program: Command, out: (line: string) => void): void {
  program
    .command('certs')
    .description('certificates for TLS')
    .command('init')
    .description('create a cluster CA, a certificate per node (CN and DNS name = node id, localhost, 127.0.0.1, ::1, --hosts) and a client certificate (CN=client); keys are written with mode 0600')
    .argument('<dir>', 'where to write ca.crt, ca.key, <id>.crt, <id>.key, client.crt, client.key')
    .requiredOption('--nodes <ids>', 'comma-separated node ids, e.g. n1,n2,n3', list)
    .option('--hosts <names>', 'comma-separated extra DNS names or IP addresses for every node certificate', list)
    .option('--days <n>', 'validity in days', days, DEFAULT_CERT_VALIDITY_DAYS)
    .option('--force', 'overwrite an existing ca.key (the old CA and every certificate it signed stop working)', false)
    .action(async (dir: string, options: { nodes: string[]; hosts?: string[]; days: number; force: boolean }, command: Command) => {
      const files = await initCerts(dir, { nodes: options.nodes, hosts: options.hosts ?? [], days: options.days, force: options.force });
      if (command.optsWithGlobals<{ json?: boolean }>().json) {
        out(JSON.stringify(files, null, 2));
        return;
      }
      out(`CA:     ${files.caCert} (key ${files.caKey}: keep it offline)`);
      for (const [id, f] of Object.entries(files.nodes)) out(`${id}:${' '.repeat(Math.max(1, 7 - id.length))}${f.cert} ${f.key}  (registry-node --tls-cert ${f.cert} --tls-key ${f.key} --tls-ca ${files.caCert})`);
      out(`client: ${files.clientCert} ${files.clientKey}  (registry --cacert ${files.caCert} --cert ${files.clientCert} --key ${files.clientKey})`);
    });
}
