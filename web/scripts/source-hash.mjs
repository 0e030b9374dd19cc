// Writes app/web/dist/SOURCE_HASH: sha256 over web/'s source, so a Python test (no Node)
// can tell whether the committed build was made from the committed source.
// Walk web/ recursively, skip node_modules, dist, coverage, .vite and *.tsbuildinfo; sort by
// relative POSIX path; feed relpath + "\0" + content + "\0" for each file.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const SKIP_DIRS = new Set(["node_modules", "dist", "coverage", ".vite"]);
const webDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(webDir, "..", "app", "web", "dist", "SOURCE_HASH");

function walk(dir, files) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) walk(path, files);
    } else if (entry.isFile() && !entry.name.endsWith(".tsbuildinfo")) {
      files.push(relative(webDir, path).split(sep).join("/"));
    }
  }
  return files;
}

// Sort by the UTF-8 bytes of the path, as Python's sorted() on str does for these names.
const files = walk(webDir, []).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
const hash = createHash("sha256");
for (const rel of files) {
  hash.update(Buffer.from(rel, "utf8"));
  hash.update(Buffer.from([0]));
  hash.update(readFileSync(join(webDir, rel)));
  hash.update(Buffer.from([0]));
}
writeFileSync(out, hash.digest("hex"));
console.log(`SOURCE_HASH over ${files.length} files written to ${relative(process.cwd(), out)}`);
