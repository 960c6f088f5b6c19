// Replays captured chat-completions answers into the AI SDK (`ai` + `@ai-sdk/openai-compatible`)
// and prints, one JSON line per answer, what the SDK handed the application.
//
//   node ai_sdk_replay.mjs ANSWERS.jsonl
//
// Each input line: {"id", "stream", "status", "body_b64", "cut" (the transport error that ended the
// answer, or null), "tools" (tool names to declare)}. The provider's fetch is replaced by one that
// returns the captured bytes, so the SDK's own response parsing, stream parsing and tool-call
// assembly run on exactly what the server sent. Output line: {"id", "text", "tool_calls":
// [{"name", "arguments"}], "finish_reason", "error"}.
import { readFileSync } from "node:fs";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, jsonSchema, streamText, tool } from "ai";

function replayFetch(answer) {
  const bytes = Buffer.from(answer.body_b64, "base64");
  return async () => {
    // No status: the server never answered (connection refused or dropped before the headers).
    if (answer.status == null) throw new TypeError(`fetch failed: ${answer.cut || "no answer"}`);
    let sent = false;
    const body = new ReadableStream({
      async pull(controller) {
        if (!sent && bytes.length) {
          sent = true;
          controller.enqueue(new Uint8Array(bytes));
        } else if (answer.cut) {
          // A cut connection surfaces in undici as a TypeError("terminated") some time after the
          // last bytes: the pause lets the SDK hand on what did arrive first, as it does live.
          await new Promise((resolve) => setTimeout(resolve, 20));
          controller.error(new TypeError(`terminated: ${answer.cut}`));
        } else {
          controller.close();
        }
      },
    });
    const type = answer.stream ? "text/event-stream" : "application/json";
    return new Response(body, { status: answer.status, headers: { "content-type": type } });
  };
}

function describe(error) {
  if (!error) return null;
  if (typeof error !== "object") return `Error: ${String(error).slice(0, 300)}`;
  const name = error.name || error.constructor?.name || "Error";
  return `${name}: ${String(error.message ?? error).slice(0, 300)}`;
}

async function replay(answer) {
  const provider = createOpenAICompatible({
    name: "replay",
    baseURL: "http://replay.invalid/v1",
    apiKey: "replay",
    includeUsage: true,
    fetch: replayFetch(answer),
  });
  const tools = Object.fromEntries(
    (answer.tools || []).map((name) => [name, tool({ inputSchema: jsonSchema({ type: "object" }) })]),
  );
  const options = { model: provider("replay"), prompt: "replay", maxRetries: 0 };
  if (Object.keys(tools).length) options.tools = tools;
  const out = { id: answer.id, text: "", tool_calls: [], finish_reason: null, error: null };
  try {
    if (!answer.stream) {
      const result = await generateText(options);
      out.text = result.text;
      out.tool_calls = result.toolCalls.map((c) => ({ name: c.toolName, arguments: c.input }));
      out.finish_reason = result.finishReason;
      return out;
    }
    const errors = [];
    const result = streamText({ ...options, onError: ({ error }) => errors.push(error) });
    for await (const part of result.fullStream) {
      if (part.type === "text-delta") out.text += part.text;
      else if (part.type === "tool-call") out.tool_calls.push({ name: part.toolName, arguments: part.input });
      else if (part.type === "tool-error") errors.push(part.error);
      else if (part.type === "error") errors.push(part.error);
      else if (part.type === "finish") out.finish_reason = part.finishReason;
    }
    if (errors.length) out.error = describe(errors[0]);
  } catch (error) {
    out.error = describe(error);
  }
  return out;
}

const lines = readFileSync(process.argv[2], "utf8").split("\n").filter((line) => line.trim());
for (const line of lines) {
  process.stdout.write(JSON.stringify(await replay(JSON.parse(line))) + "\n");
}
