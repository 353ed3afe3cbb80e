// @ag-ui/client's HttpAgent against the gateway: `node ag_ui.mjs <command> <json args>` prints one JSON result.
import { HttpAgent } from "@ag-ui/client";

const [command, raw] = process.argv.slice(2);
const args = JSON.parse(raw ?? "{}");

const commands = {
  // runAgent once (or again with the frontend tool's result), collecting every event the agent saw.
  async run() {
    const agent = new HttpAgent({ url: args.url, threadId: args.threadId, initialMessages: args.messages,
                                  headers: args.headers ?? {} });
    const events = [];
    const result = await agent.runAgent({ tools: args.tools ?? [], context: args.context ?? [] },
                                        { onEvent: ({ event }) => { events.push(event); } });
    return { events: events.map((e) => e.type), raw: events, messages: agent.messages,
             newMessages: result.newMessages };
  },
  // runAgent until it ends with an interrupt, then runAgent again on the same agent with a resume entry per
  // pending interrupt (args.payload, or status "cancelled" with args.cancel), as args.resumeHeaders if given.
  async interrupt() {
    const agent = new HttpAgent({ url: args.url, threadId: args.threadId, initialMessages: args.messages,
                                  headers: args.headers ?? {} });
    const first = [];
    await agent.runAgent({}, { onEvent: ({ event }) => { first.push(event); } });
    const interrupts = agent.pendingInterrupts;
    const resume = interrupts.map((i) => (args.cancel ? { interruptId: i.id, status: "cancelled" }
      : { interruptId: i.id, status: "resolved", payload: args.payload }));
    if (args.resumeHeaders) agent.headers = args.resumeHeaders;
    const second = [];
    let resumeError = null;
    try {
      await agent.runAgent({ resume }, { onEvent: ({ event }) => { second.push(event); } });
    } catch (err) {
      resumeError = { message: String(err && err.message), status: err && err.status, payload: err && err.payload };
    }
    return { first, interrupts, second, resumeError, messages: agent.messages,
             pendingAfter: agent.pendingInterrupts };
  },
};

commands[command]().then((out) => { process.stdout.write(JSON.stringify(out)); }, (err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.stack || err) }));
  process.exitCode = 1;
});
