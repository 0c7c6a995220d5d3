// Formatting shared by the CLI commands' human output.

/** Bytes as MiB with one decimal, for human output. */
export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
