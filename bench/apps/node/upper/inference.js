// The benchmark's trivial app in JavaScript (bench/node.py): the same
// functions as bench/apps/infsh/upper/inference.py, for the Node worker.
import { z } from "zod";

export const RunInput = z.object({ text: z.string() });
export const RunOutput = z.object({ text: z.string() });
export const LowerInput = RunInput;
export const LowerOutput = RunOutput;
export const StreamInput = RunInput;
export const StreamOutput = RunOutput;

export class App {
  async setup() {
    this.ready = true;
  }

  async run(input) {
    return { text: input.text.toUpperCase() };
  }

  async lower(input) {
    return { text: input.text.toLowerCase() };
  }

  async *stream(input) {
    const words = input.text.toUpperCase().split(/\s+/).filter(Boolean);
    for (let i = 0; i < words.length; i++) {
      yield { text: words.slice(0, i + 1).join(" ") };
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
