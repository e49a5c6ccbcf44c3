// Entry point of `pcsh`; the commands arrive with issue 6.
process.stderr.write('pcsh: not implemented yet\n');
process.exitCode = 1;
