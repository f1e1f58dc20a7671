/** What a CLI command may touch of the process: passed in, so commands are testable in-process. */
export interface CliIo {
  readonly env: Record<string, string | undefined>;
  readonly cwd: string;
  stdout(text: string): void;
  stderr(text: string): void;
}
