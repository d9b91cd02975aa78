/** Variables that point git at another repository's files (set inside a git hook, for one): `--git-dir` alone must decide. */
const LOCATION_VARIABLES = [
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_COMMON_DIR",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_INDEX_FILE",
  "GIT_NAMESPACE",
  "GIT_SHALLOW_FILE",
];

/** This process's environment for stock git: variables pointing elsewhere dropped, prompts off, messages in English. */
export function gitEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of LOCATION_VARIABLES) delete env[name];
  return { ...env, ...extra, GIT_TERMINAL_PROMPT: "0", LC_ALL: "C", LANGUAGE: "C" };
}
