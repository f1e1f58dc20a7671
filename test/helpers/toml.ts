// A TOML reader for the subset sigil's example files use (containerd hosts.toml, CRI-O and
// podman registries.conf): no TOML parser is a dependency of the project.

export type TomlValue = string | number | boolean | string[] | TomlTable | TomlTable[];
export interface TomlTable {
  [key: string]: TomlValue;
}

export function stripComment(line: string): string {
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (inString && c === '\\') i++;
    else if (c === '"') inString = !inString;
    else if (c === '#' && !inString) return line.slice(0, i);
  }
  if (inString) throw new Error(`unterminated string in ${JSON.stringify(line)}`);
  return line;
}

function parseKeys(text: string, where: string): string[] {
  const keys: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_-]+))\s*(\.|$)/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < text.length && (m = re.exec(text)) !== null) {
    keys.push(m[1] !== undefined ? (JSON.parse(`"${m[1]}"`) as string) : m[2]);
    if (m[3] === '') break;
  }
  if (keys.length === 0 || re.lastIndex !== text.length) throw new Error(`${where}: bad key ${JSON.stringify(text)}`);
  return keys;
}

function parseValue(text: string, where: string): TomlValue {
  if (text === 'true' || text === 'false') return text === 'true';
  if (/^[+-]?\d+$/.test(text)) return Number(text);
  if (text.startsWith('"')) return JSON.parse(text) as string; // basic strings with JSON's escapes
  if (text.startsWith('[')) {
    const v = JSON.parse(text) as unknown;
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new Error(`${where}: only arrays of strings`);
    return v as string[];
  }
  throw new Error(`${where}: unsupported value ${text}`);
}

export const isTable = (v: TomlValue | undefined): v is TomlTable => v !== undefined && typeof v === 'object' && !Array.isArray(v);
export const isTableArray = (v: TomlValue | undefined): v is TomlTable[] => Array.isArray(v) && v.every((x) => typeof x === 'object');

/** The table a dotted header names, creating tables on the way; through an array of tables, its last element. */
function descend(root: TomlTable, keys: string[], where: string): TomlTable {
  let t = root;
  for (const k of keys) {
    const v = t[k];
    if (v === undefined) t = t[k] = {};
    else if (isTable(v)) t = v;
    else if (isTableArray(v) && v.length > 0) t = v[v.length - 1];
    else throw new Error(`${where}: ${k} is not a table`);
  }
  return t;
}

export function parseToml(text: string): TomlTable {
  const root: TomlTable = {};
  let current = root;
  text.split('\n').forEach((raw, i) => {
    const where = `line ${i + 1}`;
    const line = stripComment(raw).trim();
    if (line === '') return;
    let m = /^\[\[(.+)\]\]$/.exec(line);
    if (m) {
      const keys = parseKeys(m[1], where);
      const parent = descend(root, keys.slice(0, -1), where);
      const k = keys[keys.length - 1];
      const arr = parent[k] ?? [];
      if (!isTableArray(arr)) throw new Error(`${where}: ${k} is not an array of tables`);
      const t: TomlTable = {};
      arr.push(t);
      parent[k] = arr;
      current = t;
      return;
    }
    m = /^\[([^[\]]+)\]$/.exec(line);
    if (m) {
      const keys = parseKeys(m[1], where);
      const parent = descend(root, keys.slice(0, -1), where);
      if (isTableArray(parent[keys[keys.length - 1]])) throw new Error(`${where}: [${m[1]}] names an array of tables`);
      current = descend(parent, keys.slice(-1), where);
      return;
    }
    m = /^([A-Za-z0-9_-]+|"[^"]*")\s*=\s*(.+)$/.exec(line);
    if (!m) throw new Error(`${where}: not TOML this reader knows: ${raw}`);
    const [key] = parseKeys(m[1], where);
    if (key in current) throw new Error(`${where}: duplicate key ${key}`);
    current[key] = parseValue(m[2].trim(), where);
  });
  return root;
}
