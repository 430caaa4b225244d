// {{name}}: a multi-function inference app in JavaScript.
//
// `setup` loads the model once; every function below shares it. A function
// is a method of `App` with exported Zod schemas named after it (`run` ->
// `RunInput`/`RunOutput`). Run one with
// `infsh app run . --function reverse --input input_reverse.json`, list them
// with `infsh app functions`, and try them all with `infsh app test`.
import { z } from "zod";

export const AppSetup = z.object({
  greeting: z.string().default("Hello").describe("Word the model starts every reply with"),
});

export const RunInput = z.object({
  name: z.string().describe("Who to greet"),
});
export const RunOutput = z.object({
  text: z.string().describe("The greeting"),
});

export const ReverseInput = z.object({
  text: z.string().describe("Text to reverse"),
});
export const ReverseOutput = z.object({
  text: z.string().describe("The text, reversed word by word"),
});

export const StreamInput = z.object({
  text: z.string().describe("Text to spell out"),
  delay: z.number().min(0).max(1).default(0.05).describe("Seconds between snapshots"),
});
export const StreamOutput = z.object({
  text: z.string().describe("The text so far"),
});

// Stands in for real weights: built once in setup, shared by every function.
class TinyModel {
  constructor(greeting) {
    this.greeting = greeting;
  }

  greet(name) {
    return `${this.greeting}, ${name}!`;
  }
}

export class App {
  async setup(config) {
    console.log("loading the model (once for all functions)");
    this.model = new TinyModel(config.greeting);
  }

  async run(input) {
    return { text: this.model.greet(input.name) };
  }

  async reverse(input) {
    return { text: input.text.split(/\s+/).filter(Boolean).reverse().join(" ") };
  }

  // An async generator streams: every yield is a snapshot.
  async *stream(input, { signal }) {
    const words = [];
    for (const word of input.text.split(/\s+/).filter(Boolean)) {
      if (signal.aborted) return;
      words.push(word);
      yield { text: words.join(" ") };
      await new Promise((resolve) => setTimeout(resolve, input.delay * 1000));
    }
  }

  async unload() {
    this.model = null;
  }
}
