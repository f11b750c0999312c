// Which output plugin a new node slot (a peer's stream of this node's changes)
// is made with: test_decoding with only-local where the server has it
// (text-decoding.ts: the walsender then drops what this node applied from
// elsewhere before decoding it), pgoutput where it does not (a PostgreSQL
// without contrib). The receiver reads whichever the slot has. Group slots
// and the part's relay copies stay pgoutput: they need origin names.
import { sqlState } from "./connection.js";
import { TEXT_DECODING_PLUGIN } from "./text-decoding.js";

export const NODE_SLOT_PLUGINS: readonly string[] = [TEXT_DECODING_PLUGIN, "pgoutput"];

/** The group slot's: its copies (a joiner's node slots start as one, a part's relay stream reads one by origin name) need pgoutput's Origin messages. */
export const GROUP_SLOT_PLUGIN = "pgoutput";

/** The server could not load the plugin's library (58P01 undefined_file: "could not access file"). */
function pluginMissing(e: unknown): boolean {
  return sqlState(e) === "58P01";
}

/**
 * Run `make` (which creates or copies a node slot) with test_decoding, and
 * again with pgoutput when the server has no test_decoding. Returns what
 * `make` returned and the plugin it was made with.
 */
export async function withNodeSlotPlugin<T>(make: (plugin: string) => Promise<T>): Promise<{ result: T; plugin: string }> {
  try {
    return { result: await make(TEXT_DECODING_PLUGIN), plugin: TEXT_DECODING_PLUGIN };
  } catch (e) {
    if (!pluginMissing(e)) throw e;
    return { result: await make("pgoutput"), plugin: "pgoutput" };
  }
}
