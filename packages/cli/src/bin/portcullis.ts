// Entry point of `portcullis`; the commands arrive with issue 6.
process.stderr.write('portcullis: not implemented yet\n');
process.exitCode = 1;
