// Drives flotilla-gateway's OpenAI-compatible API with the official `openai` npm SDK (v6).
// Usage: node openai_sdk_test.mjs  (env: GATEWAY_URL, API_KEY, LIMITED_KEY, MODEL)
// Prints one line per check and exits non-zero on the first failure.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = `${process.env.GATEWAY_URL}/v1`;
const model = process.env.MODEL;
const client = new OpenAI({ baseURL, apiKey: process.env.API_KEY, maxRetries: 0 });

async function check(name, fn) {
  const t0 = Date.now();
  await fn();
  console.log(`ok ${name} (${Date.now() - t0} ms)`);
}

async function expectError(promise, cls, status) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, status);
    return e;
  }
  assert.fail(`expected ${cls.name}`);
}

await check('models.list', async () => {
  const page = await client.models.list();
  assert.ok(page.data.some((m) => m.id === model), JSON.stringify(page.data));
  const one = await client.models.retrieve(model);
  assert.equal(one.id, model);
});

let completionText;
await check('completions.create', async () => {
  const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.usage.completion_tokens, 24);
  assert.equal(r.usage.prompt_tokens, 5);
  assert.equal(r.usage.total_tokens, 29);
  completionText = r.choices[0].text;
});

await check('completions.create stream', async () => {
  const stream = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices.length > 0) {
      text += chunk.choices[0].text;
      if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(chunks > 2, `only ${chunks} chunks`);
  assert.equal(text, completionText);  // greedy: streaming and not give the same text
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 24);
});

let chatText;
await check('chat.completions.create', async () => {
  const r = await client.chat.completions.create({
    model, temperature: 0, max_tokens: 20,
    messages: [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: 'Tell me about a cat.' }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 20);
  chatText = r.choices[0].message.content;
});

await check('chat.completions.create stream', async () => {
  const stream = await client.chat.completions.create({
    model, temperature: 0, max_tokens: 20, stream: true,
    messages: [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: 'Tell me about a cat.' }],
  });
  let text = '';
  let role = null;
  let finish = null;
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta ?? {};
    if (d.role) role = d.role;
    if (d.content) text += d.content;
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, chatText);
  assert.equal(finish, 'length');
});

await check('chat.completions.stream helper (finalChatCompletion)', async () => {
  const runner = client.chat.completions.stream({
    model, temperature: 0, max_tokens: 20,
    messages: [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: 'Tell me about a cat.' }],
  });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, chatText);
});

await check('chat logprobs', async () => {
  const r = await client.chat.completions.create({
    model, temperature: 0, max_tokens: 6, logprobs: true, top_logprobs: 2,
    messages: [{ role: 'user', content: 'Hi' }],
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 6);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
  }
});

await check('stop sequences and seed', async () => {
  const a = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 40, seed: 7, temperature: 0.8 });
  const b = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 40, seed: 7, temperature: 0.8 });
  assert.equal(a.choices[0].text, b.choices[0].text);  // same seed, same output
  const s = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: ['.'] });
  assert.equal(s.choices[0].finish_reason, 'stop');
  assert.ok(!s.choices[0].text.includes('.'));
});

await check('401 on a wrong key', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'not-a-key', maxRetries: 0 });
  await expectError(bad.completions.create({ model, prompt: 'x', max_tokens: 2 }), OpenAI.AuthenticationError, 401);
});

await check('404 on an unknown model', async () => {
  const e = await expectError(client.completions.create({ model: 'no-such-model', prompt: 'x' }), OpenAI.NotFoundError, 404);
  assert.equal(e.code, 'model_not_found');
});

await check('400 on a bad parameter', async () => {
  await expectError(client.completions.create({ model, prompt: 'x', temperature: 5 }), OpenAI.BadRequestError, 400);
  await expectError(client.chat.completions.create({ model, messages: [] }), OpenAI.BadRequestError, 400);
});

await check('429 with Retry-After', async () => {
  const limited = new OpenAI({ baseURL, apiKey: process.env.LIMITED_KEY, maxRetries: 0 });
  await limited.completions.create({ model, prompt: 'x', max_tokens: 2 });
  const e = await expectError(limited.completions.create({ model, prompt: 'x', max_tokens: 2 }), OpenAI.RateLimitError, 429);
  assert.ok(Number(e.headers.get('retry-after')) >= 1);
});

await check('concurrent streams', async () => {
  const runs = [];
  for (let i = 0; i < 16; i++) {
    runs.push((async () => {
      const stream = await client.chat.completions.create({
        model, max_tokens: 32, stream: true, messages: [{ role: 'user', content: `Story number ${i}` }],
      });
      let n = 0;
      for await (const chunk of stream) n += chunk.choices[0]?.delta?.content ? 1 : 0;
      return n;
    })());
  }
  const counts = await Promise.all(runs);
  assert.ok(counts.every((n) => n > 0), JSON.stringify(counts));
});

await check('abort mid-stream', async () => {
  const stream = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 400, stream: true, ignore_eos: true });
  let n = 0;
  for await (const chunk of stream) {
    if (++n === 3) {
      stream.controller.abort();
      break;
    }
  }
  assert.equal(n, 3);
});

console.log('ALL OK');
