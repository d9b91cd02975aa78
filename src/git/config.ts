/**
 * Reads a Git config file into `section.key` / `section.subsection.key`
 * names (section and key lower-cased, as Git compares them) and their last
 * value. Enough for the repository format checks; includes are not followed.
 */
export function parseConfig(text: string): Map<string, string> {
  const values = new Map<string, string>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = stripComment(raw).trim();
    if (line === "") continue;
    const header = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]$/.exec(line);
    if (header !== null) {
      const [, name, sub] = header;
      section = sub === undefined ? (name as string).toLowerCase() : `${(name as string).toLowerCase()}.${sub.replace(/\\(.)/g, "$1")}`;
      continue;
    }
    const eq = line.indexOf("=");
    const key = (eq < 0 ? line : line.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? "true" : unquote(line.slice(eq + 1).trim());
    values.set(`${section}.${key}`, value);
  }
  return values;
}

/** Drops a `#` or `;` comment that is not inside quotes. */
function stripComment(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === "#" || c === ";")) return line.slice(0, i);
  }
  return line;
}

function unquote(value: string): string {
  return value.replace(/"((?:[^"\\]|\\.)*)"/g, "$1").replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : c));
}
