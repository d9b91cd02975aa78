/** Options of {@link isValidRefName}, as `git check-ref-format`'s flags. */
export interface RefNameOptions {
  /** Accept a name of one component (`HEAD`, `main`), as `--allow-onelevel`. */
  allowOneLevel?: boolean;
}

// Control characters, DEL, space and ~ ^ : ? * [ \ are never allowed.
// eslint-disable-next-line no-control-regex
const FORBIDDEN_CHAR = /[\x00-\x20\x7f~^:?*[\\]/;

/**
 * Git's `check-ref-format` rules: no component empty, starting with `.` or
 * ending in `.lock`; no `..`, `@{`, control characters, space, `~^:?*[\`;
 * not `@` alone; not ending in `.`; at least two components unless
 * `allowOneLevel`.
 */
export function isValidRefName(name: string, options: RefNameOptions = {}): boolean {
  if (name === "" || name === "@" || name.endsWith(".")) return false;
  if (FORBIDDEN_CHAR.test(name) || name.includes("..") || name.includes("@{")) return false;
  const components = name.split("/");
  if (components.length < 2 && options.allowOneLevel !== true) return false;
  for (const component of components) {
    if (component === "" || component.startsWith(".") || component.endsWith(".lock")) return false;
  }
  return true;
}

/** The reason a ref name is refused, or `undefined` when it is valid. */
export function refNameProblem(name: string, options: RefNameOptions = {}): string | undefined {
  return isValidRefName(name, options) ? undefined : `Invalid ref name: ${JSON.stringify(name)} (see git check-ref-format)`;
}
