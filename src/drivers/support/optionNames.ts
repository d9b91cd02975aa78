/**
 * The option names of a driver's options type, for `checkOptions`. They are
 * given as a record so the compiler checks the list against the type both
 * ways: a name the type lacks, or one it has that the record leaves out, fails
 * the build (an array could silently miss one, which would then be refused).
 */
export function optionNames<T extends object>(names: Record<keyof T & string, true>): (keyof T & string)[] {
  return Object.keys(names) as (keyof T & string)[];
}
