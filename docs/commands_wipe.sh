slowfast record --task wipe --operator scripted --perturb --episodes 10 --seed 10000 --port 8091 --out runs/wipe/bags/batch_000
slowfast record --task wipe --operator scripted --perturb --episodes 10 --seed 10010 --port 8091 --out runs/wipe/bags/batch_001
slowfast record --task wipe --operator scripted --perturb --episodes 10 --seed 10020 --port 8091 --out runs/wipe/bags/batch_002
slowfast record --task wipe --operator scripted --perturb --episodes 10 --seed 10030 --port 8091 --out runs/wipe/bags/batch_003
slowfast record --task wipe --operator scripted --perturb --episodes 10 --seed 10040 --port 8091 --out runs/wipe/bags/batch_004
slowfast convert runs/wipe/bags/batch_000 runs/wipe/bags/batch_001 runs/wipe/bags/batch_002 runs/wipe/bags/batch_003 runs/wipe/bags/batch_004 --out runs/wipe/dataset --fps 25 --only-success
slowfast train tokenizer --dataset runs/wipe/dataset --out runs/wipe/checkpoints/tokenizer --epochs 40 --device auto --no-progress --preset sim --config runs/wipe/model_config.json --batch-size 64 --seed 0
slowfast train ldp --dataset runs/wipe/dataset --out runs/wipe/checkpoints/rdp --epochs 30 --device auto --no-progress --preset sim --config runs/wipe/model_config.json --batch-size 64 --seed 0 --tokenizer runs/wipe/checkpoints/tokenizer
slowfast train dp --dataset runs/wipe/dataset --out runs/wipe/checkpoints/dp --epochs 30 --device auto --no-progress --preset sim --config runs/wipe/model_config.json --batch-size 64 --seed 0
slowfast train dp --dataset runs/wipe/dataset --out runs/wipe/checkpoints/dp_contact --epochs 30 --device auto --no-progress --preset sim --config runs/wipe/model_config.json --batch-size 64 --seed 0 --obs-contact
slowfast export runs/wipe/checkpoints/rdp --out runs/wipe/export/rdp --tolerance 1e-3
slowfast export runs/wipe/checkpoints/dp --out runs/wipe/export/dp --tolerance 1e-3
slowfast export runs/wipe/checkpoints/dp_contact --out runs/wipe/export/dp_contact --tolerance 1e-3
slowfast sim --task wipe --controller rdp --policy runs/wipe/export/rdp --episodes 10 --seed 20000 --out runs/wipe/eval/rdp/perturbed/batch_000 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625
slowfast sim --task wipe --controller rdp --policy runs/wipe/export/rdp --episodes 10 --seed 20010 --out runs/wipe/eval/rdp/perturbed/batch_001 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp --episodes 10 --seed 20000 --out runs/wipe/eval/dp/perturbed/batch_000 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp --episodes 10 --seed 20010 --out runs/wipe/eval/dp/perturbed/batch_001 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp_contact --episodes 10 --seed 20000 --out runs/wipe/eval/dp_contact/perturbed/batch_000 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp_contact --episodes 10 --seed 20010 --out runs/wipe/eval/dp_contact/perturbed/batch_001 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625
slowfast sim --task wipe --controller rdp --policy runs/wipe/export/rdp --episodes 10 --seed 20000 --out runs/wipe/eval/rdp/unperturbed/batch_000 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625 --no-perturb
slowfast sim --task wipe --controller rdp --policy runs/wipe/export/rdp --episodes 10 --seed 20010 --out runs/wipe/eval/rdp/unperturbed/batch_001 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625 --no-perturb
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp --episodes 10 --seed 20000 --out runs/wipe/eval/dp/unperturbed/batch_000 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625 --no-perturb
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp --episodes 10 --seed 20010 --out runs/wipe/eval/dp/unperturbed/batch_001 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625 --no-perturb
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp_contact --episodes 10 --seed 20000 --out runs/wipe/eval/dp_contact/unperturbed/batch_000 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625 --no-perturb
slowfast sim --task wipe --controller dp --policy runs/wipe/export/dp_contact --episodes 10 --seed 20010 --out runs/wipe/eval/dp_contact/unperturbed/batch_001 --camera-hz 30 --control-hz 200 --set rdp_slow.rate_hz=1.5625 --no-perturb
