// Evaluates a compiled .railway/railway.ts the way the Railway CLI does: its default export is called
// with the SDK's context and project(); prints {"partial": ..., "project": <ProjectDefinition>} as JSON.
//   node railway_eval.mjs FILE.js [ENVIRONMENT]
// Run from a folder whose node_modules holds the pinned SDK (the tests link .railway/node_modules).
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { createRailwayContext, project } from "railway/iac";

const [file, environment = "production"] = process.argv.slice(2);
const mod = await import(pathToFileURL(resolve(file)).href);
if (typeof mod.default !== "function") {
  throw new Error(`${file}: the default export is not a defineRailway(...) program`);
}
const definition = await mod.default(createRailwayContext({ command: "plan", environment }), project);
process.stdout.write(JSON.stringify({ partial: mod.partial ?? null, project: definition }));
