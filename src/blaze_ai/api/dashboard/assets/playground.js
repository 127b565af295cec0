// The playground: a streaming chat with any text model, and image generation with any image
// model, through the same OpenAI-compatible API that clients use.

import { postJSON, request } from "./api.js";
import { byId, el, show } from "./dom.js";
import { sseData } from "./sse.js";

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Fill `select` with `names`, keeping the current choice; disable `fieldset` when empty. */
function fillModels(select, fieldset, names) {
  const current = [...select.options].map((o) => o.value).join("\n");
  if (current !== names.join("\n")) {
    const chosen = select.value;
    select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
    if (names.includes(chosen)) select.value = chosen;
  }
  fieldset.disabled = names.length === 0;
}

/** Seconds since `started` (a performance.now() reading), for the status lines. */
function since(started) {
  return ((performance.now() - started) / 1000).toFixed(1);
}

/** A chat with streamed answers; the conversation is kept until "Clear". */
export class ChatPlayground {
  constructor() {
    this.form = byId("chat-form");
    this.fields = byId("chat-fields");
    this.model = byId("chat-model");
    this.input = byId("chat-input");
    this.maxTokens = byId("chat-max-tokens");
    this.log = byId("chat-log");
    this.status = byId("chat-status");
    this.sendButton = byId("chat-send");
    this.stopButton = byId("chat-stop");
    this.messages = [];
    this.controller = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    // Enter sends, Shift+Enter starts a new line.
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.send();
      }
    });
    this.stopButton.addEventListener("click", () => this.controller?.abort());
    byId("chat-clear").addEventListener("click", () => this.clear());
  }

  /** The text models to choose from. */
  setModels(names) {
    fillModels(this.model, this.fields, names);
  }

  clear() {
    this.controller?.abort();
    this.messages = [];
    this.log.replaceChildren();
    this.status.textContent = "";
  }

  /** Send the typed message and stream the answer into a new bubble. */
  async send() {
    const text = this.input.value.trim();
    if (!text || this.controller !== null) return;
    // This turn belongs to this conversation, even if "Clear" starts another meanwhile.
    const messages = this.messages;
    messages.push({ role: "user", content: text });
    this.log.append(el("div", { class: "bubble user" }, text));
    const answer = el("div", { class: "bubble assistant streaming", "aria-live": "polite" });
    this.log.append(answer);
    this.input.value = "";
    this.controller = new AbortController();
    this.setBusy(true);
    const started = performance.now();
    let outcome;
    try {
      const { chunks, finish } = await this.stream(messages, answer, this.controller.signal);
      messages.push({ role: "assistant", content: answer.textContent });
      outcome = `${chunks} chunks in ${since(started)} s (finish_reason: ${finish ?? "none"})`;
    } catch (error) {
      if (error.name === "AbortError") {
        messages.push({ role: "assistant", content: answer.textContent });
        outcome = `Stopped after ${since(started)} s.`;
      } else {
        messages.pop(); // the failed turn is not part of the conversation
        answer.classList.add("error");
        if (!answer.textContent) answer.textContent = "(no answer)";
        outcome = `Error: ${error.message}`;
      }
    } finally {
      answer.classList.remove("streaming");
      this.controller = null;
      this.setBusy(false);
    }
    if (messages === this.messages) this.status.textContent = outcome;
  }

  /** POST `messages` with stream: true; append each content delta to `answer`. */
  async stream(messages, answer, signal) {
    const body = {
      model: this.model.value,
      messages,
      stream: true,
      max_tokens: Number(this.maxTokens.value) || 64,
    };
    const response = await request("v1/chat/completions", { method: "POST", body, signal });
    let chunks = 0;
    let finish = null;
    for await (const data of sseData(response.body)) {
      if (data === "[DONE]") return { chunks, finish };
      const event = JSON.parse(data);
      if (event.error) throw new Error(event.error.message ?? "the stream failed");
      const choice = event.choices?.[0];
      const piece = choice?.delta?.content;
      if (piece) {
        answer.textContent += piece;
        chunks += 1;
        this.log.scrollTop = this.log.scrollHeight;
      }
      finish = choice?.finish_reason ?? finish;
    }
    throw new Error("the stream ended before [DONE]");
  }

  setBusy(busy) {
    this.sendButton.disabled = busy;
    this.stopButton.disabled = !busy;
    if (busy) this.status.textContent = "Streaming…";
  }
}

/** One image per prompt, shown as it comes back (b64_json). */
export class ImagePlayground {
  constructor() {
    this.form = byId("image-form");
    this.fields = byId("image-fields");
    this.model = byId("image-model");
    this.prompt = byId("image-prompt");
    this.button = byId("image-generate");
    this.image = byId("image-result");
    this.status = byId("image-status");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.generate();
    });
  }

  /** The image models to choose from. */
  setModels(names) {
    fillModels(this.model, this.fields, names);
  }

  async generate() {
    const prompt = this.prompt.value.trim();
    if (!prompt || this.button.disabled) return;
    this.button.disabled = true;
    this.status.textContent = "Generating…";
    const started = performance.now();
    try {
      const body = { model: this.model.value, prompt, n: 1, response_format: "b64_json" };
      const answer = await postJSON("v1/images/generations", body);
      const b64 = answer.data?.[0]?.b64_json;
      if (typeof b64 !== "string" || !BASE64.test(b64)) throw new Error("the answer held no image");
      this.image.src = `data:image/png;base64,${b64}`;
      this.image.alt = prompt;
      show(this.image, true);
      this.status.textContent = `Generated in ${since(started)} s.`;
    } catch (error) {
      this.status.textContent = `Error: ${error.message}`;
    } finally {
      this.button.disabled = false;
    }
  }
}
