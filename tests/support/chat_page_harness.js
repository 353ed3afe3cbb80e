// Runs the script of services/gateway/static/rooms.html under node with a minimal DOM and a scripted WebSocket.
// stdin: {"html": <page>, "steps": [{"click": id} | {"input": [id, value]} | {"key": [id, key]} |
//                                   {"receive": message} | {"receive_replies": true}]}
// stdout: {"sent": [client messages], "text": {element id: its text}, "items": [[class, text] of #messages]}
"use strict";

class Element {
  constructor(tag) {
    this.tag = tag; this.children = []; this.parent = null; this.className = ""; this.value = "";
    this.disabled = false; this._text = "";
  }
  append(...nodes) {
    for (const n of nodes) {
      const node = typeof n === "string" ? Object.assign(new Element("#text"), {_text: n}) : n;
      node.parent = this; this.children.push(node);
    }
  }
  replaceChildren() { this.children = []; this._text = ""; }
  scrollIntoView() {}
  focus() {}
  get firstChild() { return this.children[0] || null; }
  get lastChild() { return this.children[this.children.length - 1] || null; }
  get previousSibling() {
    if (!this.parent) return null;
    const i = this.parent.children.indexOf(this);
    return i > 0 ? this.parent.children[i - 1] : null;
  }
  set innerHTML(html) {
    this.children = [];
    for (const m of html.matchAll(/<(\w+)[^>]*><\/\1>/g)) this.append(new Element(m[1]));
  }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set textContent(value) { this.children = []; this._text = String(value); }
}

const elements = {};
const document = {
  getElementById(id) { return elements[id] || (elements[id] = new Element("div")); },
  createElement(tag) { return new Element(tag); },
};

const sent = [];
let socket = null;
class FakeWebSocket {
  constructor(url) { this.url = url; this.readyState = 1; socket = this; }
  send(data) { sent.push(JSON.parse(data)); }
  close() {}
}
FakeWebSocket.OPEN = 1;

const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const script = input.html.match(/<script>([\s\S]*)<\/script>/)[1];
const globals = {
  document, WebSocket: FakeWebSocket, location: {protocol: "http:", host: "gateway.test"},
  crypto: {randomUUID: () => "uuid-" + sent.length},
  setInterval: () => 0, clearInterval: () => {}, setTimeout: () => 0, clearTimeout: () => {},
};
new Function(...Object.keys(globals), script)(...Object.values(globals));

function receive(message) { socket.onmessage({data: JSON.stringify(message)}); }

for (const step of input.steps) {
  if (step.click) elements[step.click].onclick();
  if (step.click_room !== undefined) elements.rooms.children[step.click_room].onclick();
  if (step.input) {
    const field = document.getElementById(step.input[0]);
    field.value = step.input[1];
    (field.oninput || (() => {}))();
  }
  if (step.key) elements[step.key[0]].onkeydown({key: step.key[1]});
  if (step.open) socket.onopen();
  if (step.receive) receive(step.receive);
  if (step.reply_to) {  // answer the last sent message of this type, echoing its id as ref
    const request = [...sent].reverse().find((m) => m.type === step.reply_to);
    receive({...step.with, ref: request.id});
  }
}

const text = {};
for (const [id, el] of Object.entries(elements)) text[id] = el.textContent;
const items = (elements.messages ? elements.messages.children : []).map((li) => [li.className, li.textContent]);
process.stdout.write(JSON.stringify({sent, text, items, url: socket && socket.url}));
