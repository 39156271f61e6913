// The npm `openai` client against a running `scout serve` (a synthetic model with Meta's real vocabulary).
// Usage: SCOUT_URL=http://127.0.0.1:PORT SCOUT_KEY=KEY SCOUT_MODEL=ID node openai-client.mjs
// Prints one line per case and "N passed, M failed"; exits 1 when any case failed.
import assert from "node:assert/strict";
import OpenAI from "openai";

const url = process.env.SCOUT_URL, key = process.env.SCOUT_KEY ?? "none", model = process.env.SCOUT_MODEL;
if (!url || !model) {
  console.error("set SCOUT_URL and SCOUT_MODEL");
  process.exit(2);
}
const client = new OpenAI({ baseURL: url + "/v1", apiKey: key, maxRetries: 0, timeout: 60_000 });

const weatherSchema = {
  type: "object",
  properties: { city: { type: "string", maxLength: 10 }, days: { type: "integer" } },
  required: ["city", "days"],
  additionalProperties: false,
};
const itemSchema = {
  type: "object",
  properties: { name: { type: "string", maxLength: 6 }, count: { type: "integer" }, ok: { type: "boolean" } },
  required: ["name", "count", "ok"],
  additionalProperties: false,
};

const cases = {
  async "chat.completions.create"() {
    const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Say hello" }], max_tokens: 8, temperature: 0 });
    assert.equal(r.object, "chat.completion");
    assert.equal(r.choices.length, 1);
    assert.equal(typeof r.choices[0].message.content, "string");
    assert.ok(r.choices[0].message.content.length > 0);
    assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
    assert.ok(r.usage.prompt_tokens > 3 && r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
    return r.choices[0].message.content;
  },

  async "chat streaming equals non-streaming"() {
    const body = { model, messages: [{ role: "user", content: "Say hello" }], max_tokens: 8, temperature: 0 };
    const whole = (await client.chat.completions.create(body)).choices[0].message.content;
    const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
    let text = "", chunks = 0, usage = null, finish = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const c = chunk.choices[0];
      if (!c) continue;
      chunks++;
      text += c.delta.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
    assert.equal(text, whole);
    assert.ok(chunks >= 2, `only ${chunks} chunks`);
    assert.ok(finish);
    assert.ok(usage && usage.completion_tokens >= 1);
  },

  async "chat streaming abort"() {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model, messages: [{ role: "user", content: "Count" }], max_tokens: 400, stream: true, ignore_eos: true }, { signal: controller.signal });
    let n = 0;
    try {
      for await (const _ of stream) if (++n === 3) controller.abort();
    } catch (e) {
      assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === "AbortError", String(e));
    }
    assert.ok(n >= 3 && n < 400, `${n} chunks read after the abort`);
    // The server let the sequence go: nothing is left generating.
    for (let i = 0; i < 100; i++) {
      const metrics = await (await fetch(url + "/metrics")).text();
      if (/^scout_active_sequences 0$/m.test(metrics)) return;
      await new Promise(r => setTimeout(r, 100));
    }
    assert.fail("the aborted sequence is still active");
  },

  async "chat tools (required)"() {
    const r = await client.chat.completions.create({
      model, messages: [{ role: "user", content: "Weather in Paris?" }], max_tokens: 100, temperature: 0,
      tools: [{ type: "function", function: { name: "get_weather", description: "Weather for a city", parameters: weatherSchema } }],
      tool_choice: "required",
    });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0];
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    const args = JSON.parse(call.function.arguments);
    assert.equal(typeof args.city, "string");
    assert.ok(Number.isInteger(args.days));
    return call.function.arguments;
  },

  async "chat tools streamed"() {
    const stream = await client.chat.completions.create({
      model, messages: [{ role: "user", content: "Weather in Paris?" }], max_tokens: 100, temperature: 0, stream: true,
      tools: [{ type: "function", function: { name: "get_weather", parameters: weatherSchema } }], tool_choice: "required",
    });
    let name = "", args = "", finish = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      for (const t of c.delta.tool_calls ?? []) { name += t.function?.name ?? ""; args += t.function?.arguments ?? ""; }
      if (c.finish_reason) finish = c.finish_reason;
    }
    assert.equal(name, "get_weather");
    assert.equal(finish, "tool_calls");
    JSON.parse(args);
  },

  async "chat structured output (json_schema)"() {
    const r = await client.chat.completions.create({
      model, messages: [{ role: "user", content: "An item as JSON" }], max_tokens: 120, temperature: 0.8, seed: 1,
      response_format: { type: "json_schema", json_schema: { name: "item", schema: itemSchema, strict: true } },
    });
    const value = JSON.parse(r.choices[0].message.content);
    assert.deepEqual(Object.keys(value), ["name", "count", "ok"]);
    assert.ok([...value.name].length <= 6);
    assert.ok(Number.isInteger(value.count));
    assert.equal(typeof value.ok, "boolean");
    return r.choices[0].message.content;
  },

  async "responses.create (plain)"() {
    const r = await client.responses.create({ model, input: "Say hello", max_output_tokens: 8, temperature: 0 });
    assert.equal(r.object, "response");
    assert.ok(["completed", "incomplete"].includes(r.status));
    assert.equal(typeof r.output_text, "string");
    assert.ok(r.output_text.length > 0);
    assert.equal(r.output[0].type, "message");
    assert.equal(r.output[0].content[0].type, "output_text");
    assert.ok(r.usage.input_tokens > 3 && r.usage.output_tokens >= 1);
    // The same greedy request through chat completions gives the same text.
    const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Say hello" }], max_tokens: 8, temperature: 0 });
    assert.equal(r.output_text, chat.choices[0].message.content);
    return r.output_text;
  },

  async "responses.create (instructions, structured output)"() {
    const r = await client.responses.create({
      model, instructions: "Answer in JSON.", input: [{ role: "user", content: [{ type: "input_text", text: "An item" }] }],
      max_output_tokens: 120, temperature: 0.8,
      text: { format: { type: "json_schema", name: "item", schema: itemSchema, strict: true } },
    });
    assert.equal(r.status, "completed");
    assert.deepEqual(Object.keys(JSON.parse(r.output_text)), ["name", "count", "ok"]);
    assert.equal(r.instructions, "Answer in JSON.");
  },

  async "responses.create (streamed)"() {
    const stream = await client.responses.create({ model, input: "Say hello", max_output_tokens: 8, temperature: 0, stream: true });
    const types = [];
    let text = "", done = null, last = -1;
    for await (const event of stream) {
      types.push(event.type);
      assert.ok(event.sequence_number > last);
      last = event.sequence_number;
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.output_text.done") assert.equal(event.text, text);
      if (event.type === "response.completed" || event.type === "response.incomplete") done = event.response;
    }
    assert.equal(types[0], "response.created");
    assert.equal(types[1], "response.in_progress");
    for (const t of ["response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                     "response.content_part.done", "response.output_item.done"])
      assert.ok(types.includes(t), `no ${t} event`);
    assert.ok(done, "no response.completed / response.incomplete event");
    assert.equal(done.output[0].content[0].text, text);
    const whole = await client.responses.create({ model, input: "Say hello", max_output_tokens: 8, temperature: 0 });
    assert.equal(text, whole.output_text);
  },

  async "responses.create (function tool, then its output)"() {
    const tools = [{ type: "function", name: "get_weather", description: "Weather for a city", parameters: weatherSchema, strict: true }];
    const r = await client.responses.create({ model, input: "Weather in Paris?", tools, tool_choice: "required", max_output_tokens: 100, temperature: 0 });
    const calls = r.output.filter(o => o.type === "function_call");
    assert.equal(calls.length, 1);
    assert.equal(calls[0].name, "get_weather");
    assert.ok(calls[0].call_id);
    const args = JSON.parse(calls[0].arguments);
    assert.equal(typeof args.city, "string");

    // Streamed, the call comes as argument events.
    const stream = await client.responses.create({ model, input: "Weather in Paris?", tools, tool_choice: "required", max_output_tokens: 100, temperature: 0, stream: true });
    let deltas = "", doneArgs = null;
    for await (const e of stream) {
      if (e.type === "response.function_call_arguments.delta") deltas += e.delta;
      if (e.type === "response.function_call_arguments.done") doneArgs = e.arguments;
    }
    assert.equal(doneArgs, calls[0].arguments);
    assert.equal(deltas, doneArgs);

    // The call and its output go back in; the model answers in text.
    const next = await client.responses.create({
      model, tools, tool_choice: "none", max_output_tokens: 6, temperature: 0,
      input: [{ role: "user", content: "Weather in Paris?" }, calls[0], { type: "function_call_output", call_id: calls[0].call_id, output: '{"temperature_c": 21}' }],
    });
    assert.equal(next.output[0].type, "message");
    return calls[0].arguments;
  },

  async "models.list and models.retrieve"() {
    const list = await client.models.list();
    assert.deepEqual(list.data.map(m => m.id), [model]);
    const one = await client.models.retrieve(model);
    assert.equal(one.id, model);
    assert.ok(one.source);
  },

  async "errors are OpenAI errors"() {
    await assert.rejects(client.responses.create({ model, input: "hi", previous_response_id: "resp_x" }),
      e => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "previous_response_id");
  },
};

let passed = 0, failed = 0;
for (const [name, run] of Object.entries(cases)) {
  const started = Date.now();
  try {
    const note = await run();
    passed++;
    console.log(`ok   ${name} (${Date.now() - started} ms)${note ? " " + JSON.stringify(note).slice(0, 120) : ""}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
