"""What a user would write without loraforge: Trainer + PEFT with default arguments.

The model's chat template where it has one, a pad-to-longest collator (DataCollatorForSeq2Seq), random batches,
full-vocabulary logits at every position, fp32, and one-by-one greedy generation for evaluation. Same model, data,
rank, epochs, learning rate, batch size and schedule as the loraforge run it is compared with; only the
engineering differs.

Usage: python bench/plain_script.py CONFIG.json   (written by bench/compare.py)
Prints one JSON line with its measurements.
"""

from __future__ import annotations

import json
import sys
import time


def main(config_path: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    cfg = json.loads(open(config_path).read())
    tok = AutoTokenizer.from_pretrained(cfg["model"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(cfg["model"])
    model = get_peft_model(model, LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"],
                                             target_modules=cfg["target_modules"], task_type="CAUSAL_LM",
                                             modules_to_save=cfg["modules_to_save"] or None))

    def prompt_ids(prompt: str) -> list[int]:  # through the chat template where the model has one
        if tok.chat_template:
            prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
            return tok(prompt, add_special_tokens=False)["input_ids"]
        return [tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]

    def encode(example: dict) -> dict:
        prompt = prompt_ids(example["prompt"])
        target = tok(example["target"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        return {"input_ids": prompt + target, "attention_mask": [1] * (len(prompt) + len(target)),
                "labels": [-100] * len(prompt) + target}

    train = [encode(json.loads(line)) for line in open(cfg["train"])]
    args = TrainingArguments(output_dir=cfg["out"], num_train_epochs=cfg["epochs"], learning_rate=cfg["lr"],
                             per_device_train_batch_size=cfg["batch_size"], lr_scheduler_type=cfg["scheduler"],
                             warmup_steps=cfg["warmup_ratio"], seed=cfg["seed"], report_to="none",
                             save_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    collator = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, padding=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    real = padded = 0
    for batch in trainer.get_train_dataloader():
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start

    model.eval()
    test = [json.loads(line) for line in open(cfg["test"])]
    outputs = []
    start = time.perf_counter()
    with torch.no_grad():
        for example in test:
            ids = torch.tensor([prompt_ids(example["prompt"])])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=cfg["max_new_tokens"],
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            outputs.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    eval_s = time.perf_counter() - start
    tokens = sum(len(x["input_ids"]) for x in train) * cfg["epochs"]
    print(json.dumps({"train_s": train_s, "eval_s": eval_s, "train_tokens": tokens,
                      "tokens_per_s": tokens / train_s, "padding_fraction": 1 - real / padded,
                      "generations": outputs}))


if __name__ == "__main__":
    main(sys.argv[1])
