# isoflop.gp: plots isoflop.dat. Rendered by scalinglab report with
#   gnuplot -e "set terminal pdfcairo size 5in,3.4in font 'Sans,10'; set output 'isoflop.pdf'" isoflop.gp
#   gnuplot -e "set terminal pngcairo size 1100,750 font 'Sans,13'; set output 'isoflop.png'" isoflop.gp
# (run in this directory); restyle here and rerun.
set encoding utf8
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set key outside right top spacing 1.1 box lc rgb '#bbbbbb'
set format x '10^{%L}'
set logscale xy
set xlabel 'non-embedding parameters N'
set ylabel 'predicted loss (nats/token)'
set format y '%g'
set title 'isoFLOP curves (C = 6ND) and compute-optimal frontier'
set xrange [569429:2.39839e+07]
set xtics ('1M' 1e+06, '2M' 2e+06, '3M' 3e+06, '5M' 5e+06, '10M' 1e+07, '20M' 2e+07)
set yrange [0.460618:2.99795]
set ytics ('0.5' 0.5, '0.6' 0.6, '0.8' 0.8, '1' 1, '1.2' 1.2, '1.5' 1.5, '2' 2, '2.5' 2.5)
plot 'isoflop.dat' index 0 with lines lc 1 dt 1 lw 1.5 title 'dense, C = 2.2e+13 FLOPs', \
     'isoflop.dat' index 1 with lines lc 2 dt 1 lw 1.5 title 'dense, C = 3.1e+14 FLOPs', \
     'isoflop.dat' index 2 with lines lc 3 dt 1 lw 1.5 title 'dense, C = 4.3e+15 FLOPs', \
     'isoflop.dat' index 3 with lines lc 4 dt 1 lw 1.5 title 'dense, C = 6.1e+16 FLOPs', \
     'isoflop.dat' index 4 with linespoints pt 7 ps 0.6 lw 2.5 lc rgb 'black' dt 1 title 'dense frontier', \
     'isoflop.dat' index 5 with lines lc 1 dt 2 lw 1.5 title 'hybrid, C = 2.2e+13 FLOPs', \
     'isoflop.dat' index 6 with lines lc 2 dt 2 lw 1.5 title 'hybrid, C = 3.1e+14 FLOPs', \
     'isoflop.dat' index 7 with lines lc 3 dt 2 lw 1.5 title 'hybrid, C = 4.3e+15 FLOPs', \
     'isoflop.dat' index 8 with lines lc 4 dt 2 lw 1.5 title 'hybrid, C = 6.1e+16 FLOPs', \
     'isoflop.dat' index 9 with linespoints pt 5 ps 0.6 lw 2.5 lc rgb 'black' dt 2 title 'hybrid frontier'
