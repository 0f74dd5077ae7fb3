import { backendInfo } from '../torch/native.js';

export async function infoCommand(): Promise<number> {
  const info = backendInfo();
  console.log(`libtorch ${info.torchVersion}  threads=${info.threads}  gloo=${info.gloo}  cuda=${info.cuda}`);
  console.log(info.parallelInfo.trim());
  return 0;
}
