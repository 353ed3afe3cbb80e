// The Vercel AI SDK against the gateway: `node ai_sdk.mjs <command> <json args>` prints one JSON result.
import { createOpenAI } from "@ai-sdk/openai";
import {
  DefaultChatTransport, jsonSchema, lastAssistantMessageIsCompleteWithApprovalResponses, readUIMessageStream,
  streamText, tool,
} from "ai";

const [command, raw] = process.argv.slice(2);
const args = JSON.parse(raw ?? "{}");

async function drain(stream, limit = Infinity) {
  const chunks = [];
  const reader = stream.getReader();
  while (chunks.length < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return { chunks, reader };
}

async function lastMessage(chunks, message = undefined) {
  let last;
  const stream = new ReadableStream({ start(c) { chunks.forEach((x) => c.enqueue(x)); c.close(); } });
  for await (const built of readUIMessageStream({ stream, message })) last = built;
  return last;
}

const commands = {
  // streamText on @ai-sdk/openai's default provider model (the Responses API), with a tool without execute.
  async streamText() {
    const openai = createOpenAI({ baseURL: args.baseURL, apiKey: "unused" });
    const tools = args.withTool ? {
      lookup_order: tool({ description: "Find an order.", inputSchema: jsonSchema({
        type: "object", properties: { number: { type: "string" } }, required: ["number"] }) }),
    } : undefined;
    const result = streamText({ model: openai(args.model), prompt: args.prompt, tools });
    const deltas = [];
    for await (const delta of result.textStream) deltas.push(delta);
    return { deltas, text: await result.text, finishReason: await result.finishReason,
             toolCalls: (await result.toolCalls).map((c) => ({ name: c.toolName, input: c.input })) };
  },
  // The chat transport useChat uses: send, drop the connection after `dropAfter` chunks, resume, read the rest.
  async chat() {
    const transport = new DefaultChatTransport({ api: args.api });
    const abort = new AbortController();
    const stream = await transport.sendMessages({
      chatId: args.chatId, trigger: "submit-message", messageId: undefined, abortSignal: abort.signal,
      messages: args.messages, body: args.body });
    const { chunks: before, reader } = await drain(stream, args.dropAfter ?? Infinity);
    if (args.dropAfter !== undefined) {
      abort.abort();
      await reader.cancel().catch(() => {});
    }
    let resumed = null;
    if (args.dropAfter !== undefined) {
      const again = await transport.reconnectToStream({ chatId: args.chatId });
      resumed = again === null ? null : (await drain(again)).chunks;
    }
    const afterEnd = await transport.reconnectToStream({ chatId: args.chatId });
    const all = resumed ?? before;
    const message = await lastMessage(all);
    return { before, resumed, chunks: all,
             message, afterEnd: afterEnd === null ? null : "stream" };
  },
  // A tool call that needs approval: read the stream up to its tool-approval-request, answer it the way
  // Chat.addToolApprovalResponse does (the part goes to approval-responded), send the next request as
  // sendAutomaticallyWhen(lastAssistantMessageIsCompleteWithApprovalResponses) would, read the continuation.
  async approve() {
    const transport = new DefaultChatTransport({ api: args.api, headers: args.headers });
    const first = await transport.sendMessages({
      chatId: args.chatId, trigger: "submit-message", messageId: undefined, messages: args.messages });
    const { chunks: asked } = await drain(first);
    const askedMessage = await lastMessage(asked);
    const waiting = askedMessage.parts.find((p) => p.state === "approval-requested");
    const answered = { ...askedMessage, parts: askedMessage.parts.map((p) => p !== waiting ? p : {
      ...p, state: "approval-responded", approval: { ...p.approval, approved: args.approved, reason: args.reason } }) };
    const messages = [...args.messages, answered];
    const ready = lastAssistantMessageIsCompleteWithApprovalResponses({ messages });
    const second = await transport.sendMessages({
      chatId: args.chatId, trigger: "submit-message", messageId: answered.id, messages });
    const { chunks: rest } = await drain(second);
    const message = await lastMessage(rest, answered);
    return { asked, askedMessage, ready, rest, message };
  },
};

commands[command]().then((out) => { process.stdout.write(JSON.stringify(out)); }, (err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.stack || err) }));
  process.exitCode = 1;
});
