/**
 * `deno task build`: the single executable, `dist/otedge`, via `deno compile`.
 *
 * Workers and data files are not reachable by static imports, so each is
 * passed with `--include`: every Worker module registered in the source
 * catalog, and config/demo.yaml. `--dry-run` checks those inputs and prints
 * the command without compiling (deno compile downloads its `denort` runtime,
 * which machines without internet access cannot do).
 */
import { workerModules } from "../src/sources/catalog.ts";

const root = new URL("../", import.meta.url);
const rel = (u: URL) => u.pathname.slice(root.pathname.length);
const dryRun = Deno.args.includes("--dry-run");
const target = Deno.args.find((a) => a.startsWith("--target="))?.slice("--target=".length);

const includes = [...workerModules().map(rel), "config/demo.yaml", "config/config.yaml"];
const problems: string[] = [];
for (const f of includes) {
  try {
    await Deno.stat(new URL(f, root));
  } catch {
    problems.push(`missing build input: ${f}`);
  }
}
if (problems.length > 0) {
  console.error(problems.join("\n"));
  Deno.exit(1);
}

const args = [
  "compile",
  "--allow-all",
  "--output",
  "dist/otedge",
  ...(target ? ["--target", target] : []),
  ...includes.flatMap((f) => ["--include", f]),
  "main.ts",
];
console.log(`deno ${args.join(" ")}`);
if (dryRun) {
  console.log(`build inputs ok: ${includes.length} included files`);
  Deno.exit(0);
}
const { code } = await new Deno.Command(Deno.execPath(), {
  args,
  cwd: root,
  stdout: "inherit",
  stderr: "inherit",
})
  .output();
if (code !== 0) {
  console.error(
    "deno compile failed. It downloads the denort runtime on first use; on a machine without internet " +
      "access, copy denort into DENO_DIR or build on a connected machine.",
  );
}
Deno.exit(code);
