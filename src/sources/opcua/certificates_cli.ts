/**
 * `otedge certificates`: lists the OPC UA server certificates in the agent's
 * store and trusts or rejects one (see `pki.ts`). Runs without node-opcua.
 */
import { parseArgs } from "node:util";
import { listCertificates, opcuaPkiDir, PkiError, setCertificateTrust } from "./pki.ts";

/** Options of `certificatesCommand`; the output hooks exist for tests. */
export interface CertificatesCommandOptions {
  env: Record<string, string>;
  /** connector.data_dir of a config file (throws with the file's problems). */
  dataDirOf: (configFile: string) => Promise<string>;
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
}

/** Usage text of the command. */
export const CERTIFICATES_USAGE =
  `Usage: otedge certificates <command> [--config FILE | --data-dir DIR]

OPC UA server certificates in the agent's store <data_dir>/pki/opcua (trusted/certs/,
rejected/). A source rejects a server certificate it does not know (the file lands in
rejected/) until it is trusted; it then connects on its next retry, without a restart.

Commands:
  list        the certificates, rejected first: state, thumbprint, subject, validity, file
  trust ID    move a certificate to trusted/certs/
  reject ID   move a certificate to rejected/ (sources stop connecting to that server)

ID: the SHA-1 thumbprint (or its first 8+ hex digits) or the file name.
The data directory is DIR, else connector.data_dir of FILE, else CONNECTOR_DATA_DIR,
else ./data.`;

async function dataDir(
  values: { config?: string; "data-dir"?: string },
  opts: CertificatesCommandOptions,
): Promise<string> {
  if (values["data-dir"]) return values["data-dir"];
  if (values.config) return await opts.dataDirOf(values.config);
  return opts.env.CONNECTOR_DATA_DIR ?? "./data";
}

/** Runs `otedge certificates ARGS`; returns the exit code (2: bad usage, 1: failed). */
export async function certificatesCommand(
  args: string[],
  opts: CertificatesCommandOptions,
): Promise<number> {
  const out = opts.stdout ?? ((t: string) => console.log(t));
  const err = opts.stderr ?? ((t: string) => console.error(t));
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: "string" },
      "data-dir": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, id, ...extra] = positionals;
  if (values.help) {
    out(CERTIFICATES_USAGE);
    return 0;
  }
  const wantsId = command === "trust" || command === "reject";
  if (
    !["list", "trust", "reject"].includes(command) || wantsId !== (id !== undefined) || extra.length
  ) {
    err(
      `otedge certificates: ${
        command ? "bad arguments" : "missing command"
      }\n\n${CERTIFICATES_USAGE}`,
    );
    return 2;
  }
  let pkiDir: string;
  try {
    pkiDir = opcuaPkiDir(await dataDir(values, opts));
  } catch (e) {
    err((e as Error).message);
    return 2;
  }
  try {
    if (command === "list") {
      const all = await listCertificates(pkiDir);
      if (all.length === 0) out(`no certificates in ${pkiDir}`);
      for (const c of all) {
        out(
          `${c.state.padEnd(8)} ${c.thumbprint}  ${c.subject || "(no subject)"}  ` +
            `valid ${c.not_before ?? "?"} .. ${c.not_after ?? "?"}  ${c.path}`,
        );
      }
      return 0;
    }
    const c = await setCertificateTrust(pkiDir, id, command === "trust" ? "trusted" : "rejected");
    out(`${c.state}: ${c.thumbprint} ${c.subject || "(no subject)"} -> ${c.path}`);
    return 0;
  } catch (e) {
    err(`otedge certificates ${command}: ${(e as Error).message}`);
    return e instanceof PkiError ? 2 : 1;
  }
}
