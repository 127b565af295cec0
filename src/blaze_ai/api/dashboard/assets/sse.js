// Server-sent events read from a fetch() body, as OpenAI's streaming answers send them.

/**
 * Yield the data of each event of `body` (a ReadableStream of bytes), as it arrives.
 *
 * Events end with a blank line; an event's "data:" lines are joined with "\n"; comment lines
 * (":" first, keep-alives) and other fields are skipped. OpenAI's stream ends with the data
 * "[DONE]", or with an event whose data is an {"error": ...} object.
 */
export async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end = buffer.indexOf("\n\n");
      while (end !== -1) {
        const data = eventData(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (data !== null) yield data;
        end = buffer.indexOf("\n\n");
      }
    }
    const last = eventData(buffer);
    if (last !== null) yield last;
  } finally {
    // Also when the reader stops early (after "[DONE]", or aborted): drop the connection.
    await reader.cancel().catch(() => {});
  }
}

/** The data of one event's lines, or null when it has no data line. */
function eventData(block) {
  const lines = block.split("\n").filter((line) => line.startsWith("data:"));
  if (lines.length === 0) return null;
  return lines.map((line) => line.slice(line.startsWith("data: ") ? 6 : 5)).join("\n");
}
