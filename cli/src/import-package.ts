/**
 * import() of a package from the CLI (the daemon for `start`, the config loader for
 * `install-unit`). The CLI normally runs from its CommonJS bundle, evaluated by cli/dist/index.js
 * as a vm.Script with a V8 code cache (see index.ts): code there has no dynamic import of its
 * own, so the launcher lends its import() through a global hook. Without the hook (the modules
 * ran directly) this is a plain import().
 */
type Importer = (specifier: string) => Promise<unknown>;

export function importPackage<T>(specifier: string): Promise<T> {
  const hook = (globalThis as { __netfenceImport?: Importer }).__netfenceImport;
  return (hook !== undefined ? hook(specifier) : import(specifier)) as Promise<T>;
}
