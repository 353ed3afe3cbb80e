// @ag-ui/client's HttpAgent against the gateway: `node ag_ui.mjs <command> <json args>` prints one JSON result.
import { HttpAgent } from "@ag-ui/client";

const [command, raw] = process.argv.slice(2);
const args = JSON.parse(raw ?? "{}");

const commands = {
  // runAgent once (or again with the frontend tool's result), collecting every event the agent saw.
  async run() {
    const agent = new HttpAgent({ url: args.url, threadId: args.threadId, initialMessages: args.messages });
    const events = [];
    const result = await agent.runAgent({ tools: args.tools ?? [], context: args.context ?? [] },
                                        { onEvent: ({ event }) => { events.push(event); } });
    return { events: events.map((e) => e.type), raw: events, messages: agent.messages,
             newMessages: result.newMessages };
  },
};

commands[command]().then((out) => { process.stdout.write(JSON.stringify(out)); }, (err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.stack || err) }));
  process.exitCode = 1;
});
